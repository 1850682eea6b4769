"""The API's contract tests reuse the Python client's fixtures: a real `quotamesh run` on loopback (from
`$QUOTAMESH_BINARY`, else the repository's debug build), stopped by its process id."""
import importlib.util
import sys
from pathlib import Path

_CLIENT_TESTS = Path(__file__).resolve().parents[2] / "clients" / "python" / "tests"
sys.path.insert(0, str(_CLIENT_TESTS))
_spec = importlib.util.spec_from_file_location("client_fixtures", _CLIENT_TESTS / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

start_node = _fixtures.start_node
