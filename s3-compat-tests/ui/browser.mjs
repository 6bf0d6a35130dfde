// What the browser tests share (s3-compat-tests/ui/drive.mjs, appstore/tests/ui/appstore.mjs):
// the environment, Chromium from playwright-core, pages that record dialogs, script errors
// and CSP violations, checks, polling, screenshots at desktop and phone width, accessibility
// checks (axe-core: WCAG 2.1 A and AA, contrast included), and the test OpenID provider's
// login form.
//
// Env: UI_TOOLS (where setup.sh installed playwright-core), ARTIFACTS (screenshot directory).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

/** The value of the environment variable `name`; throws when it is unset. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** What went wrong on any page: dialogs (an XSS would open one), script errors, CSP violations. */
export const problems = [];

/** Throws `what` unless `ok`. */
export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** Waits until `fn` returns something truthy, polling every `every` ms. */
export async function until(fn, what, timeout = 60_000, every = 250) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Resolves npm packages installed by setup.sh in UI_TOOLS. */
const tools = () => createRequire(path.join(env('UI_TOOLS'), 'package.json'));

/** Headless Debian Chromium. */
export async function launch() {
  const { chromium } = tools()('playwright-core');
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
}

/** Records the problems of `page`; script errors and CSP violations only on pages under `origin`. */
function watch(page, origin) {
  const ours = () => page.url().startsWith(origin);
  page.on('dialog', async (d) => {
    problems.push(`a dialog opened on ${page.url()}: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => {
    if (ours()) problems.push(`script error on ${page.url()}: ${e.message}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text()) && ours()) {
      problems.push(`CSP violation on ${page.url()}: ${m.text()}`);
    }
  });
}

/** A page in a fresh context (no cookies) whose pages are all watched. */
export async function newPage(browser, origin) {
  const context = await browser.newContext({ viewport: DESKTOP });
  // Generous: the whole suite shares two cores with this browser.
  context.setDefaultTimeout(60_000);
  context.on('page', (p) => watch(p, origin));
  const page = await context.newPage();
  watch(page, origin);
  return page;
}

/** Screenshots of `page` at desktop and phone width: ARTIFACTS/<name>-desktop.png, -phone.png. */
export async function shoot(page, name) {
  const dir = env('ARTIFACTS');
  await page.evaluate(() => document.activeElement?.blur());
  await page.screenshot({ path: path.join(dir, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(200);
  await page.screenshot({ path: path.join(dir, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

/**
 * Throws unless axe-core finds `page` as it is now free of WCAG 2.1 A and AA violations
 * (labels, names, roles, contrast, …). axe runs through the DevTools protocol, which the
 * page's CSP does not govern, so the page itself still allows no foreign script.
 */
export async function accessible(page, what) {
  const source = fs.readFileSync(tools().resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(source);
  const { passed, violations } = await page.evaluate(async () => {
    const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: tags } });
    return {
      passed: result.passes.map((r) => r.id),
      violations: result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`),
    };
  });
  check(passed.includes('color-contrast') || violations.some((v) => v.startsWith('color-contrast')), `axe checked the contrast of ${what}: ${passed}`);
  check(violations.length === 0, `${what} is accessible: ${violations.join('; ')}`);
}

/** Clicks "Sign in" on `page` and signs `user` in at the test provider's login form. */
export async function login(page, user) {
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.waitForSelector('input[name="username"]');
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', `${user}-pass`);
  await page.click('button[type="submit"]');
}
