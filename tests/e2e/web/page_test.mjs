// The operator's page in headless Chromium, driven by playwright-core (tests/e2e/page_test.cpp
// runs it against a `station serve` with simulated fixtures, then compares what it printed
// with `station audit query`). As an operator would: sign in with a token, open a batch with
// the page's form, watch the counts and fixture tiles until the batch's devices are all done
// or failed, save a screenshot. Prints one JSON object on stdout: what the page showed.
//
//   node page_test.mjs --url http://127.0.0.1:PORT/ --token-file FILE --batch NAME \
//        --product P --quantity N --fixtures K --screenshot OUT.png [--key-mode station]
//        [--timeout-s 90] [--chromium /usr/bin/chromium]
//
// With --reprovision REASON instead of the batch options, as a security officer: sign in,
// press the first done device's "Re-provision…" button, give REASON in its prompt, and wait
// for the row to show the device reserved; prints {"who", "serial", "state", "buttons"}.
//
// The token is read from the file (never on the command line). Progress goes to stderr.
// Exit 0 when the page did all of it (the caller checks the numbers); 1 with a reason.
import { readFileSync } from "node:fs";

function args(argv) {
  const out = {};
  for (let k = 0; k < argv.length; k += 2) {
    if (!argv[k].startsWith("--") || k + 1 >= argv.length) throw new Error(`bad argument ${argv[k]}`);
    out[argv[k].slice(2)] = argv[k + 1];
  }
  const needs = out.reprovision !== undefined ? ["url", "token-file"]
                                              : ["url", "token-file", "batch", "product", "quantity", "fixtures", "screenshot"];
  for (const need of needs)
    if (!out[need]) throw new Error(`--${need} is required`);
  return out;
}

const log = (...m) => process.stderr.write(`page_test: ${m.join(" ")}\n`);

// Everything the page shows that the test compares, read from the DOM.
function snapshot() {
  const num = (id) => Number.parseInt(document.getElementById(id).textContent, 10);
  return {
    title: document.getElementById("batch-title").textContent,
    batch_state: document.getElementById("batch-state").textContent,
    done: num("c-done"),
    failed: num("c-failed"),
    in_flight: num("c-flight"),
    quantity: num("c-qty"),
    live: document.getElementById("conn").textContent,
    fixtures: [...document.querySelectorAll("#fixtures .tile")].map((t) => ({
      number: Number(t.dataset.fixture),
      status: t.dataset.status,
      done: Number(t.dataset.done),
      failed: Number(t.dataset.failed),
      text: t.textContent,
    })),
    devices: [...document.querySelectorAll("#devices tr")].map((r) => ({
      serial: r.dataset.serial,
      state: r.children[2] ? r.children[2].textContent : "",
      qr: !!(r.querySelector("img.qr") && r.querySelector("img.qr").naturalWidth > 0),
    })),
  };
}

async function main() {
  const a = args(process.argv.slice(2));
  const token = readFileSync(a["token-file"], "utf8").trim();
  const quantity = Number.parseInt(a.quantity, 10);
  const fixtures = Number.parseInt(a.fixtures, 10);
  const deadline = Date.now() + 1000 * Number(a["timeout-s"] || 90);

  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    throw new Error(`cannot load playwright-core (${e.message}): run scripts/setup-deps (npm ci in tests/e2e/web)`);
  }
  const browser = await chromium.launch({
    executablePath: a.chromium || process.env.STATION_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const problems = [];     // script errors and console errors on the page
  const httpErrors = [];   // answers of 400 and above: {status, method, path}
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    // A failed load is logged on the console too; it is in httpErrors (the caller judges).
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
        problems.push(`console: ${m.text()} (${m.location().url})`);
    });
    page.on("response", (r) => {
      if (r.status() >= 400)
        httpErrors.push({ status: r.status(), method: r.request().method(), path: new URL(r.url()).pathname });
    });
    page.setDefaultTimeout(20000);

    // Sign in.
    await page.goto(a.url);
    await page.waitForSelector("#login-form", { state: "visible" });
    const mainBeforeSignIn = await page.isVisible("#main");
    await page.fill("#token", token);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#main", { state: "visible" });
    const who = await page.textContent("#who");
    const loginAfterSignIn = await page.isVisible("#login");
    log(`signed in as ${who}`);
    if (a.reprovision !== undefined) {
      await reprovisionFirstDone(page, a.reprovision, who);
      return;
    }
    await page.waitForSelector("#open-batch", { state: "visible" });
    await page.waitForFunction(() => document.getElementById("conn").textContent === "live");
    const before = await page.evaluate(snapshot);

    // Open the batch with the page's form.
    await page.fill("#ob-name", a.batch);
    await page.fill("#ob-product", a.product);
    await page.fill("#ob-quantity", String(quantity));
    await page.selectOption("#ob-keymode", a["key-mode"] || "station");
    await page.click("#open-form button[type=submit]");
    await page.waitForFunction(
      (name) => document.getElementById("batch-title").textContent.startsWith(`${name}:`) ||
                document.getElementById("open-error").textContent !== "",
      a.batch);
    const openError = await page.textContent("#open-error");
    if (openError) throw new Error(`the page could not open the batch: ${openError}`);
    log(`opened ${a.batch} from the page`);

    // Watch the devices complete: every change of the counts, until all are done or failed,
    // nothing is in flight, and the fixture tiles have caught up.
    const seen = [];  // distinct {done, failed} the counts showed, in order
    let last = null;
    let settled = null;
    for (;;) {
      const s = await page.evaluate(snapshot);
      const key = `${s.done}/${s.failed}`;
      if (!seen.length || seen[seen.length - 1].key !== key) {
        seen.push({ key, done: s.done, failed: s.failed, at_ms: Date.now() });
        log(`done ${s.done} failed ${s.failed} in progress ${s.in_flight}; tiles ` +
            s.fixtures.map((f) => `${f.number}:${f.status}:${f.done}/${f.failed}`).join(" "));
      }
      last = s;
      const tileDone = s.fixtures.reduce((n, f) => n + f.done, 0);
      const tileFailed = s.fixtures.reduce((n, f) => n + f.failed, 0);
      const complete = s.done + s.failed >= quantity && s.in_flight === 0 && s.fixtures.length === fixtures &&
                       tileDone === s.done && tileFailed === s.failed && s.fixtures.every((f) => f.status !== "busy");
      if (complete) {
        // It must stay so (a late event must not change it).
        if (settled === null) settled = Date.now();
        else if (Date.now() - settled >= 1500) break;
      } else {
        settled = null;
      }
      if (Date.now() > deadline) {
        log("timed out before the batch completed on the page");
        break;
      }
      await page.waitForTimeout(100);
    }
    // The label previews of the last devices, for the screenshot (best effort).
    await page.waitForFunction(
      () => [...document.querySelectorAll("#devices img.qr")].every((i) => i.complete && i.naturalWidth > 0),
      null, { timeout: 5000 }).catch(() => log("some label previews did not load"));
    last = await page.evaluate(snapshot);
    await page.screenshot({ path: a.screenshot, fullPage: true });
    log(`screenshot ${a.screenshot}`);

    const t0 = seen.length ? seen[0].at_ms : 0;
    process.stdout.write(`${JSON.stringify({
      who,
      main_visible_before_sign_in: mainBeforeSignIn,
      login_visible_after_sign_in: loginAfterSignIn,
      before: { title: before.title, fixtures: before.fixtures.length },
      final: last,
      tiles_done: last.fixtures.reduce((n, f) => n + f.done, 0),
      tiles_failed: last.fixtures.reduce((n, f) => n + f.failed, 0),
      seen: seen.map((s) => ({ done: s.done, failed: s.failed, at_ms: s.at_ms - t0 })),
      reprovision_buttons: await page.locator("#devices button.reprovision").count(),
      problems,
      http_errors: httpErrors,
    })}\n`);
  } finally {
    await browser.close();
  }
}

// The officer's part: the first done device's button, its prompt, the row's new state.
async function reprovisionFirstDone(page, reason, who) {
  await page.waitForSelector("#devices button.reprovision");
  const buttons = await page.locator("#devices button.reprovision").count();
  const row = page.locator("#devices tr", { has: page.locator("button.reprovision") }).first();
  const serial = await row.getAttribute("data-serial");
  page.once("dialog", (d) => d.accept(reason));
  await row.locator("button.reprovision").click();
  await page.waitForFunction(
    (s) => {
      const r = document.querySelector(`#devices tr[data-serial="${s}"]`);
      return r && r.children[2].textContent === "reserved";
    },
    serial);
  log(`re-provisioned ${serial} from the page`);
  process.stdout.write(`${JSON.stringify({ who, serial, state: "reserved", buttons })}\n`);
}

main().catch((e) => {
  process.stderr.write(`page_test: ${e.stack || e.message}\n`);
  process.exit(1);
});
