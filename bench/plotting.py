"""What the plot scripts in bench/ share: matplotlib without a display, and writing a figure."""
import os
import sys


def pyplot(script):
    """matplotlib's pyplot drawing to files, or None (with a message naming `script`) when it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{script}: matplotlib is needed (python3 -m pip install matplotlib)", file=sys.stderr)
        return None
    return plt


def save(figure, path):
    """Lays `figure` out and writes it to `path` (a PNG), creating its folder."""
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"\nwrote {path}", file=sys.stderr)
