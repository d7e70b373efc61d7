// The dashboard in Debian's chromium, headless, against a live stack that
// tests/browser/run.py started: watch a run progress without reloading, see
// a run's stage graph and a live log line, a branch that is markup shown as
// text, an approval refused (a read-only token) with the API's message and
// then given by keyboard, the promotion carried through to production, and
// a strategy drawn when the run's answer has one, a live log that goes on
// after its requests failed, and the log of a stage retried from its page
// followed into the next attempt, more runs than a page paged through to
// the oldest and back, and back from a page opened by its address. Any console
// error, page error, failed request or unexpected error status fails it.
//
// usage: node dashboard.mjs SETUP.json  (written by run.py)
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const setup = JSON.parse(readFileSync(process.argv[2], "utf8"));
const base = setup.url;
const results = [];
const problems = [];
// Error statuses and console messages a step provokes on purpose.
let expected = [];

function check(name, ok, detail) {
  results.push({ name, ok: !!ok });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${!ok && detail ? ": " + detail : ""}`);
}

async function step(name, fn) {
  try {
    await fn();
    check(name, true);
  } catch (e) {
    check(name, false, e && e.message ? e.message.split("\n").slice(0, 6).join("\n") : String(e));
  }
}

async function hook(name, ref) {
  const body = JSON.stringify(setup.payloads[name]);
  const sig = "sha256=" + createHmac("sha256", setup.secret).update(body).digest("hex");
  const res = await fetch(base + "/hooks/github", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "User-Agent": "GitHub-Hookshot/test",
      "X-GitHub-Event": "push",
      "X-GitHub-Delivery": randomUUID(),
      "X-GitHub-Hook-ID": "1",
      "X-Hub-Signature-256": sig,
    },
    body,
  });
  const out = await res.json();
  if (res.status !== 202 || !out.runs || out.runs.length !== 1) {
    throw new Error(`webhook ${name}${ref ? " " + ref : ""}: ${res.status} ${JSON.stringify(out)}`);
  }
  return out.runs[0];
}

const profile = mkdtempSync(join(tmpdir(), "sluice-chromium-"));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disk-cache-dir=" + join(profile, "cache"),
  ],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(20000);

page.on("console", (msg) => {
  if (msg.type() !== "error") return;
  if (expected.some((re) => re.test(msg.text()))) return;
  problems.push("console error: " + msg.text());
});
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("dialog", async (d) => {
  problems.push(`unexpected ${d.type()} dialog: ${d.message()}`);
  await d.dismiss();
});
page.on("requestfailed", (req) => {
  const why = req.failure() ? req.failure().errorText : "?";
  // A log request still open when the page navigates is cut off by the
  // browser: that is the page leaving, not a failure.
  if (why === "net::ERR_ABORTED" && req.url().includes("/log")) return;
  problems.push(`request failed: ${req.method()} ${req.url()}: ${why}`);
});
page.on("response", (res) => {
  if (res.status() < 400) return;
  const line = `${res.status()} ${res.request().method()} ${res.url()}`;
  if (expected.some((re) => re.test(line))) return;
  problems.push("error response: " + line);
});
const authHeaders = [];
page.on("request", (req) => {
  if (req.method() === "POST") authHeaders.push(req.headers()["authorization"] || "");
});

const shot = (name) => page.screenshot({ path: join(setup.screenshots, name + ".png"), fullPage: true });
const row = (id) => page.locator(`tr[data-run="${id}"]`);

// Clicks the button labelled label in scope, then, in the dialog it opens,
// gives token and confirms; returns once the dialog closed.
async function act(scope, label, token) {
  await scope.getByRole("button", { name: label }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("API token").fill(token);
  await dialog.getByRole("button", { name: label }).click();
  await dialog.waitFor({ state: "hidden" });
}

try {
  let webRun;
  let releaseRun;
  await step("the runs list shows a run progress without reloading", async () => {
    await page.goto(base + "/");
    await page.getByRole("heading", { name: "Runs" }).waitFor();
    await page.evaluate(() => { window.__sameDocument = true; });
    webRun = await hook("web");
    await row(webRun).locator(".status", { hasText: "running" }).waitFor({ timeout: 15000 });
    await shot("runs-running");
    await row(webRun).locator(".status", { hasText: "succeeded" }).waitFor({ timeout: 30000 });
    if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error("the page reloaded");
    const cells = await row(webRun).locator("td").allTextContents();
    if (cells[2] !== "web" || cells[3] !== "main") throw new Error("row: " + JSON.stringify(cells));
  });

  await step("a branch named as markup is shown as text", async () => {
    const evil = await hook("web_evil");
    await row(evil).waitFor();
    const ref = await row(evil).locator("td.ref").textContent();
    if (ref !== setup.evil_branch) throw new Error("ref cell: " + ref);
    if (await page.locator("main img").count()) throw new Error("an img element was created");
    await row(evil).locator(".status", { hasText: /running|succeeded/ }).waitFor({ timeout: 15000 });
    await page.goto(`${base}/runs/${evil}`);
    await page.locator(".meta").getByText(setup.evil_branch, { exact: true }).waitFor();
    if (await page.locator("main img").count()) throw new Error("an img element was created on the run page");
  });

  await step("a run's page shows the stage graph and a live log line", async () => {
    await page.goto(base + "/");
    const id = await hook("web");
    await row(id).locator("a").click();
    await page.waitForURL(`${base}/runs/${id}*`);
    const cols = page.locator(".graph > li");
    await page.locator('.stage[data-stage="package"]').waitFor();
    const layout = await cols.evaluateAll((lis) =>
      lis.map((li) => [...li.querySelectorAll(".stage")].map((b) => b.dataset.stage)));
    if (JSON.stringify(layout) !== JSON.stringify([["build"], ["unit", "lint"], ["package"]])) {
      throw new Error("graph columns: " + JSON.stringify(layout));
    }
    await page.locator('.stage[data-stage="build"]').getByText("running").waitFor({ timeout: 15000 });
    await page.locator("#log .line", { hasText: "compiling unit 1 of 6" }).waitFor();
    // A later line arrives while the page is open: the log is live.
    await page.locator("#log-state", { hasText: "live" }).waitFor();
    await page.locator("#log .line", { hasText: "compiling unit 4 of 6" }).waitFor({ timeout: 15000 });
    await shot("run-live-log");
    await page.locator(".run-head .status", { hasText: "succeeded" }).waitFor({ timeout: 30000 });
    for (const s of ["build", "unit", "lint", "package"]) {
      const text = await page.locator(`.stage[data-stage="${s}"]`).textContent();
      if (!/succeeded/.test(text) || !/\d+s/.test(text)) throw new Error(`stage ${s}: ${text}`);
    }
    await page.locator('.stage[data-stage="unit"]').click();
    await page.locator("#log-title", { hasText: "Log: unit" }).waitFor();
    const unitLines = page.locator("#log .line .text");
    await page.locator("#log .line", { hasText: "unit tests pass" }).waitFor();
    const shown = (await unitLines.allTextContents()).filter((t) => !/^(checking out|exit code)/.test(t));
    if (JSON.stringify(shown) !== JSON.stringify(["fetching 100%", "ok unit tests pass"])) {
      throw new Error("unit's log shown as " + JSON.stringify(shown));
    }
    const passLine = page.locator("#log .line .text", { hasText: "unit tests pass" });
    const ok = passLine.locator("span.fg2.bold");
    if ((await ok.textContent()) !== "ok") throw new Error("no green bold ok: " + await passLine.innerHTML());
    await page.locator('.stage[data-stage="lint"]').focus();
    await page.keyboard.press("Enter");
    await page.locator("#log-title", { hasText: "Log: lint" }).waitFor();
    await page.locator("#log .line.err", { hasText: "lint clean" }).waitFor();
    await shot("run-succeeded");
  });

  await step("a staging promotion is approved by clicking, after a refusal is shown", async () => {
    const id = await hook("release");
    releaseRun = id;
    await page.goto(`${base}/runs/${id}`);
    const staging = page.locator('.env[data-env="staging"]');
    await staging.locator(".status", { hasText: "waiting approval" }).waitFor({ timeout: 30000 });
    await page.locator('.env[data-env="development"] .status', { hasText: "deployed" }).first().waitFor();
    await page.locator(".run-head .status", { hasText: "waiting" }).waitFor();
    for (const s of ["constructor", "__proto__"]) {
      await page.locator(`.stage[data-stage="${s}"]`, { hasText: "succeeded" }).waitFor();
    }
    await shot("release-waiting");

    // Refused first, for a token that may only read: the dialog shows the
    // API's own message.
    expected = [/status of 403/, /^403 POST .*\/approve$/];
    await staging.getByRole("button", { name: "Approve" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("API token").fill(setup.tokens.viewer);
    await dialog.getByLabel(/Reason/).fill("release notes reviewed");
    await dialog.getByRole("button", { name: "Approve" }).click();
    await dialog.getByRole("alert").getByText("(403)").waitFor();
    const refusal = await dialog.getByRole("alert").textContent();
    const api = await fetch(`${base}/api/v1/runs/${id}/environments/staging/approve`, {
      method: "POST", headers: { Authorization: "Bearer " + setup.tokens.viewer, "Content-Type": "application/json" },
      body: JSON.stringify({ reason: "x" }),
    }).then((r) => r.json());
    if (refusal !== api.error.message + " (403)") throw new Error(`shown "${refusal}", API says "${api.error.message}"`);
    await shot("approval-refused");
    expected = [];

    // Then by keyboard: the token field, then submit with Enter.
    await dialog.getByLabel("API token").fill("");
    await dialog.getByLabel("API token").focus();
    await page.keyboard.type(setup.tokens.approver);
    await dialog.getByLabel(/Reason/).focus();
    await page.keyboard.press("Enter"); // a new line in the reason, not a submit
    await dialog.getByLabel(/Reason/).fill("release notes reviewed");
    await dialog.getByRole("button", { name: "Approve" }).focus();
    await page.keyboard.press("Enter");
    await dialog.waitFor({ state: "hidden" });
    await staging.locator("[data-approval]", { hasText: "approved by approver" }).waitFor();
    await staging.locator("[data-approval]", { hasText: "release notes reviewed" }).waitFor();
    if (authHeaders.at(-1) !== "Bearer " + setup.tokens.approver) throw new Error("Authorization: " + authHeaders.at(-1));
    const stored = await page.evaluate(() => sessionStorage.getItem("sluice.token"));
    if (stored !== setup.tokens.approver) throw new Error("token kept: " + stored);
    if (await page.getByRole("button", { name: "Approve" }).count()) throw new Error("Approve still offered");
  });

  await step("the production canary's weight changes live, and a click on Promote finishes it", async () => {
    const id = releaseRun;
    await page.evaluate(() => { window.__sameDocument = true; });
    const production = page.locator('.env[data-env="production"]');
    const legend = production.locator("[data-weights]");
    await legend.filter({ hasText: "stable 80% \u00b7 canary 20%" }).waitFor({ timeout: 30000 });
    await shot("canary-20");
    // The timed pause parks the rollout; it goes on by itself to 50 %.
    await legend.filter({ hasText: "stable 50% \u00b7 canary 50%" }).waitFor({ timeout: 30000 });
    await production.getByText(/step \d+ of \d+/).waitFor();
    await production.getByText(/paused/i).first().waitFor({ timeout: 15000 });
    await shot("canary-50-paused");
    if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error("the page reloaded");
    await act(production, "Promote", setup.tokens.operator);
    await production.locator("> header .status", { hasText: "deployed" }).waitFor({ timeout: 30000 });
    await page.locator(".run-head .status", { hasText: "succeeded" }).waitFor({ timeout: 30000 });
    const run = await fetch(`${base}/api/v1/runs/${id}`).then((r) => r.json());
    const rollout = run.stages["deploy@production"].rollout;
    if (rollout.phase !== "Healthy") throw new Error("rollout phase " + rollout.phase);
    const promoted = rollout.steps.find((s) => s.name === "pause until promoted");
    if (!promoted || !/promoted by operator/.test(promoted.message)) throw new Error("pause: " + JSON.stringify(promoted));
    await shot("release-deployed");
    await page.emulateMedia({ colorScheme: "dark" });
    await shot("release-deployed-dark");
    await page.goto(base + "/");
    await row(id).waitFor();
    await shot("runs-dark");
    await page.emulateMedia({ colorScheme: "light" });
  });

  // Every kind of row at once (analysis passing and failing, checklist items
  // done and open, markup in a name): the run's answer is given them, in the
  // shape the API reports, to check how they are drawn.
  await step("a promotion's strategy, weights, analysis and checklist render when present", async () => {
    const id = releaseRun;
    const url = `**/api/v1/runs/${id}`;
    await page.route(url, async (route) => {
      const res = await route.fetch();
      const run = await res.json();
      run.environments.staging.strategy = {
        name: "canary", step: 2, steps: 4, weights: { stable: 75, canary: 25 },
        analysis: [
          { metric: "error_rate", value: 0.004, op: "<=", threshold: 0.01, pass: true },
          { metric: "p99_latency_ms", value: 812, op: "<=", threshold: 500, pass: false },
        ],
        checklist: [{ item: "dashboards checked", done: true }, { item: "<b>on-call</b> told", done: false }],
      };
      run.environments.staging.actions = ["promote", "abort"];
      await route.fulfill({ status: 200, json: run });
    });
    await page.goto(`${base}/runs/${id}`);
    const staging = page.locator('.env[data-env="staging"]');
    await staging.getByText("step 2 of 4").waitFor();
    await staging.locator("[data-weights]", { hasText: "stable 75% \u00b7 canary 25%" }).waitFor();
    const rows = await staging.locator("table tbody tr").evaluateAll((trs) =>
      trs.map((tr) => [...tr.cells].map((td) => td.querySelector(".word") ? td.querySelector(".word").textContent : td.textContent)));
    const want = [["error_rate", "0.004", "<= 0.01", "passed"], ["p99_latency_ms", "812", "<= 500", "failed"]];
    if (JSON.stringify(rows) !== JSON.stringify(want)) throw new Error("analysis: " + JSON.stringify(rows));
    await staging.getByText("dashboards checked (done)").waitFor();
    await staging.getByText("<b>on-call</b> told (open)").waitFor();
    await staging.getByRole("button", { name: "Promote" }).waitFor();
    await staging.getByRole("button", { name: "Abort" }).waitFor();
    if (await page.locator('.env[data-env="development"] h4').count()) throw new Error("strategy drawn without one");
    await shot("strategy");
    await page.unroute(url);
  });

  await step("a live log goes on after its requests failed", async () => {
    // As while the agent restarts: the first two requests for the log fail.
    let failed = 0;
    const logs = "**/stages/build/log*";
    await page.route(logs, (route) => (failed++ < 2 ? route.abort("aborted") : route.continue()));
    try {
      const id = await hook("web");
      await page.goto(`${base}/runs/${id}`);
      await page.locator("#log .line", { hasText: "compiling unit 6 of 6" }).waitFor({ timeout: 30000 });
    } finally {
      await page.unroute(logs);
    }
    if (failed < 3) throw new Error("log requests: " + failed);
  });

  await step("every status has a filter choice or a symbol of its own", async () => {
    await page.goto(base + "/");
    const choices = await page.locator("#f-status option").evaluateAll((os) => os.map((o) => o.value));
    if (JSON.stringify(choices.slice(1).sort()) !== JSON.stringify([...setup.run_statuses].sort())) {
      throw new Error("status filter: " + JSON.stringify(choices));
    }
    // A run whose stages have every status a stage may have, in the shape
    // the API reports: none is drawn with the symbol of an unknown one.
    // They have no logs.
    expected = [/status of 404/, /^404 GET .*\/log$/];
    const url = `**/api/v1/runs/${releaseRun}`;
    await page.route(url, async (route) => {
      const run = await (await route.fetch()).json();
      run.status = "aborted";
      run.stages = Object.fromEntries(setup.stage_statuses.map((st) => [st, { status: st, attempts: [] }]));
      await route.fulfill({ status: 200, json: run });
    });
    try {
      await page.goto(`${base}/runs/${releaseRun}`);
      await page.locator(`.stage[data-stage="${setup.stage_statuses.at(-1)}"]`).waitFor();
      const glyphs = await page.locator(".run-head .status .glyph, .stage .glyph").evaluateAll((gs) =>
        gs.map((g) => [g.closest(".status").dataset.status, g.textContent]));
      const unknown = glyphs.filter(([, g]) => g === "\u2022");
      if (glyphs.length !== setup.stage_statuses.length + 1 || unknown.length) {
        throw new Error("unknown: " + JSON.stringify(unknown) + " of " + glyphs.length);
      }
    } finally {
      await page.unroute(url);
      await page.goto(base + "/");
      expected = [];
    }
  });

  await step("a failed run retried from its page shows the next attempt's log", async () => {
    const id = await hook("flaky");
    await page.goto(`${base}/runs/${id}`);
    await page.locator(".run-head .status", { hasText: "failed" }).waitFor({ timeout: 30000 });
    await page.locator("#log-state", { hasText: /^failed/ }).waitFor();
    await act(page.locator(".run-head"), "Retry failed stages", setup.tokens.operator);
    await page.locator(".run-head .status", { hasText: "succeeded" }).waitFor({ timeout: 30000 });
    await page.locator("#log-state", { hasText: /^succeeded/ }).waitFor();
    const lines = await page.locator("#log .line .text").allTextContents();
    const attempts = lines.filter((l) => /^attempt \d$/.test(l));
    if (JSON.stringify(attempts) !== JSON.stringify(["attempt 1", "attempt 2"])) {
      throw new Error("log: " + JSON.stringify(lines));
    }
  });

  // run.py recorded more runs than a page holds, older than all the others.
  await step("the runs list pages to the oldest run and back, never counting a page as all", async () => {
    const oldest = setup.archived.at(-1);
    await page.goto(base + "/");
    const count = page.locator("#runs-count");
    await count.filter({ hasText: /^newest 100 runs$/ }).waitFor();
    if ((await page.locator("tbody tr").count()) !== 100) throw new Error("first page rows");
    const first = await page.locator("tbody tr").first().getAttribute("data-run");
    const pager = page.getByRole("navigation", { name: "Older and newer runs" });
    if (!(await pager.getByRole("button", { name: "Newer" }).isDisabled())) throw new Error("Newer enabled on the first page");
    await pager.getByRole("button", { name: "Older" }).click();
    await row(oldest).waitFor();
    await count.filter({ hasText: /^oldest \d+ runs$/ }).waitFor();
    const total = 100 + (await page.locator("tbody tr").count());
    const listed = await fetch(base + "/api/v1/runs?limit=500").then((r) => r.json());
    if (listed.runs.length !== total || listed.runs.at(-1).id !== oldest) {
      throw new Error(`two pages hold ${total} of ${listed.runs.length} runs`);
    }
    if (await row(first).count()) throw new Error("the newest run on the older page");
    if (!new URL(page.url()).searchParams.get("before")) throw new Error("address: " + page.url());
    if (!(await pager.getByRole("button", { name: "Older" }).isDisabled())) throw new Error("Older enabled on the last page");
    await shot("runs-oldest");
    // A reload stays on the page, and Newer still leads back.
    await page.reload();
    await row(oldest).waitFor();
    await pager.getByRole("button", { name: "Newer" }).click();
    await row(first).waitFor();
    await count.filter({ hasText: /^newest 100 runs$/ }).waitFor();
    if (new URL(page.url()).search) throw new Error("address: " + page.url());
    // Opened by its address alone, a page deep in the list leads to the
    // page just newer than it, not to the newest, and back.
    const [justNewer, deep, deepFirst] = [setup.archived[11], setup.archived[110], setup.archived[111]];
    await page.goto(`${base}/?before=${deep}`);
    await row(deepFirst).waitFor();
    await pager.getByRole("button", { name: "Newer" }).click();
    await row(deep).waitFor();
    await count.filter({ hasText: /^100 older runs$/ }).waitFor();
    if ((await row(deepFirst).count()) || !(await row(justNewer).count())) throw new Error("not the page just newer");
    if (new URL(page.url()).searchParams.get("after") !== deepFirst) throw new Error("address: " + page.url());
    await pager.getByRole("button", { name: "Older" }).click();
    await row(deepFirst).waitFor();
    if (await row(deep).count()) throw new Error("the newer page's runs on the older page");
    // Filters changed while the list's answer is on its way start no second
    // loop of polls: the list, asked for once a second, is asked for at most
    // six times in five seconds.
    const slow = "**/api/v1/runs?*";
    await page.route(slow, async (route) => {
      await new Promise((r) => setTimeout(r, 300));
      // The page may have given the request up meanwhile.
      await route.continue().catch(() => {});
    });
    for (const name of ["flaky", "", "flaky", ""]) {
      await page.selectOption("#f-pipeline", name);
      await page.waitForTimeout(100);
    }
    await page.unroute(slow);
    await count.filter({ hasText: /^newest 100 runs$/ }).waitFor();
    const asks = [];
    const onAsk = (req) => { if (/\/api\/v1\/runs\?/.test(req.url())) asks.push(req.url()); };
    page.on("request", onAsk);
    await page.waitForTimeout(5000);
    page.off("request", onAsk);
    if (asks.length > 6) throw new Error(`${asks.length} asks for the list in 5 s: more than one loop of polls`);
    // A filter that keeps fewer runs than a page counts them all.
    await page.selectOption("#f-pipeline", "flaky");
    await count.filter({ hasText: /^1 run$/ }).waitFor();
    if (await pager.isVisible()) throw new Error("a pager for one page");
    await page.selectOption("#f-pipeline", "");
  });

  await step("assets carry a strict CSP, an ETag and their Content-Type", async () => {
    for (const [path, type] of [["/", "text/html"], ["/assets/app.js", "text/javascript"],
      ["/assets/app.css", "text/css"]]) {
      const res = await fetch(base + path);
      const csp = res.headers.get("content-security-policy") || "";
      if (!res.ok || !res.headers.get("content-type").startsWith(type)) throw new Error(`${path}: ${res.status} ${res.headers.get("content-type")}`);
      if (!/script-src 'self'/.test(csp) || /unsafe-inline/.test(csp)) throw new Error(`${path}: CSP ${csp}`);
      const again = await fetch(base + path, { headers: { "If-None-Match": res.headers.get("etag") } });
      if (again.status !== 304) throw new Error(`${path}: revalidation gave ${again.status}`);
    }
  });
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}

check("no console error, page error, failed request or error status", problems.length === 0,
  problems.slice(0, 10).join("\n"));
const failed = results.filter((r) => !r.ok).length;
console.log(`browser: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
