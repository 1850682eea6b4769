// `npm install ./clients/js` into a new project (a local folder: no registry needed), then the README's
// ten-line agent against a stand-in upstream through a real node: no 429, and usage refunded.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { test } from "node:test";

import { startNode, startUpstream } from "./support.js";

const run = promisify(execFile);
const packageFolder = resolve(dirname(fileURLToPath(import.meta.url)), "..");

test("a new project installs the client and runs the example agent", { skip: process.env.QUOTAMESH_SKIP_NPM_TEST === "1" }, async () => {
  const project = mkdtempSync(join(tmpdir(), "quotamesh-js-agent-"));
  const upstream = await startUpstream(4, 2);
  const node = await startNode({ openai: { limit: 4, window: "2s", limits: { tokens: { limit: 1_000_000, window: "30d" } } } });
  try {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "agent", private: true, type: "module" }));
    await run("npm", ["install", "--no-audit", "--no-fund", "--offline", packageFolder], { cwd: project, timeout: 120_000 });
    copyFileSync(join(packageFolder, "examples", "agent.mjs"), join(project, "agent.mjs"));
    const { stdout } = await run(process.execPath, ["agent.mjs"], {
      cwd: project, timeout: 120_000,
      env: { ...process.env, QUOTAMESH_API: node.api, OPENAI_BASE_URL: `${upstream.url}/v1` },
    });
    const lines = stdout.trim().split("\n");
    assert.deepEqual(lines.slice(0, 12).map((line) => line.split(" ")[0]), Array.from({ length: 12 }, (_, i) => String(i)));
    assert.equal(upstream.rejected, 0);
    assert.ok(upstream.maxInOneWindow() <= 4);
    const used = upstream.usages.reduce((sum, usage) => sum + usage.total_tokens, 0);
    assert.ok(used < 12 * 100);
    assert.equal(lines[12], `tokens consumed by this node: ${used}`);
  } finally {
    await node.stop();
    await upstream.stop();
    rmSync(project, { recursive: true, force: true });
  }
});
