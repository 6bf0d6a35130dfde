// Drive's file browser in headless Chromium, driven by playwright-core; run by
// s3-compat-tests/tests/drive_ui.rs, which starts Drive and the test OpenID provider.
//
// Env: DRIVE_URL, UI_TOOLS (where setup.sh installed playwright-core), ALBUM (a folder to
// upload), HOSTILE_FILE and HOSTILE (a file with a hostile name, and that name), BIG and
// BIG_SIZE (the big file and its size), ARTIFACTS (screenshot directory), PAGED (how many
// keys alice's `default` workspace holds: more than one listing page).
// Exits 0 when every check passes; prints what it does.
import fs from 'node:fs';
import { check, env, launch, login, newPage, problems, shoot, until } from './browser.mjs';

const DRIVE = env('DRIVE_URL');
const UI = `${DRIVE}/_drive/ui/`;
const ALBUM = env('ALBUM');
const HOSTILE = env('HOSTILE');
const HOSTILE_FILE = env('HOSTILE_FILE');
const BIG = env('BIG');
const BIG_SIZE = Number(env('BIG_SIZE'));
const ARTIFACTS = env('ARTIFACTS');
const PAGED = Number(env('PAGED'));
const PART = 8 * 1024 * 1024;

const step = (what) => console.log(`drive-ui: ${what}`);

async function signIn(page, user) {
  await page.goto(UI);
  await login(page, user);
  await page.waitForURL((u) => u.href.startsWith(UI));
  await page.locator('#user', { hasText: `Signed in as ${user}` }).waitFor();
  step(`${user} signed in`);
}

const row = (page, key) => page.locator(`#rows tr[data-key="${key.replace(/["\\]/g, '\\$&')}"]`);
const keys = (page) => page.$$eval('#rows tr', (trs) => trs.map((t) => t.dataset.key));
const uploadNote = (page, key) => page.locator(`#upload-list li[data-key="${key}"] .hint`).textContent();

async function run() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // The page's headers.
  const head = await fetch(UI);
  const csp = head.headers.get('content-security-policy') || '';
  check(csp.includes("default-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe'), `strict CSP: ${csp}`);
  const me = await fetch(`${UI}api/me`);
  check(me.status === 401, `signed out, api/me answers 401, not ${me.status}`);
  const presign = await fetch(`${UI}api/presign`, { method: 'POST', body: '{}' });
  check(presign.status === 401, `signed out, api/presign answers 401, not ${presign.status}`);

  const browser = await launch();
  try {
    const page = await newPage(browser, DRIVE);
    await signIn(page, 'alice');
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'drive_ui_session');
    check(session && session.httpOnly && session.sameSite === 'Lax', `the session cookie is HttpOnly and SameSite=Lax: ${JSON.stringify(session)}`);
    // Without the CSRF token, the session cookie alone signs nothing.
    const noCsrf = await page.evaluate(async () => (await fetch('api/presign', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method: 'GET', bucket: '_my' }) })).status);
    check(noCsrf === 403, `presign without the CSRF token answers 403, not ${noCsrf}`);
    const buckets = await page.$$eval('#bucket option', (os) => os.map((o) => o.value));
    check(buckets.join(',') === '_my,default,team-a', `alice's buckets: ${buckets}`);
    await page.getByText('This folder is empty.').waitFor();

    // A folder, by the folder picker.
    await page.setInputFiles('#folder', ALBUM);
    await until(async () => (await keys(page)).includes('album/'), 'the album folder in the listing');
    await until(async () => (await page.locator('#upload-list li .hint', { hasText: 'Done' }).count()) === 3, 'three files uploaded');
    step('uploaded a folder of 3 files');

    // The hostile name renders as text.
    await page.setInputFiles('#files', HOSTILE_FILE);
    await row(page, HOSTILE).waitFor();
    check(await row(page, HOSTILE).locator('td.name').textContent() === HOSTILE, 'the hostile name shows as text');
    check(await page.locator('#rows img').count() === 0, 'no element came out of a file name');
    step('a hostile name shows as text');

    // The big file: reload in the middle, then resume with only the missing parts.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 25 * 1024 * 1024 });
    const total = Math.ceil(BIG_SIZE / PART);
    let before = 0;
    let after = 0;
    let reloaded = false;
    let listParts = 0;
    let done = 0;
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (r.method() === 'PUT' && u.searchParams.has('partNumber')) {
        if (reloaded) after += 1; else before += 1;
      }
      if (r.method() === 'GET' && u.searchParams.has('uploadId')) listParts += 1;
    });
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (r.request().method() === 'PUT' && u.searchParams.has('partNumber') && r.status() === 200) done += 1;
    });
    await page.setInputFiles('#files', BIG);
    await until(() => done >= 6, 'six parts of the big file');
    reloaded = true;
    await page.reload();
    await page.locator('#user', { hasText: 'Signed in as alice' }).waitFor();
    await page.locator('#pending-list li[data-key="big.bin"]').waitFor();
    await shoot(page, 'drive-resume');
    step(`reloaded after ${done} of ${total} parts (${before} sent)`);
    await page.setInputFiles('#pending-list li[data-key="big.bin"] input[type=file]', BIG);
    await until(async () => (await uploadNote(page, 'big.bin').catch(() => '')) === 'Done', 'the big upload to finish', 300_000, 500);
    check(listParts >= 1, 'the resumed upload asked which parts are there (ListParts)');
    check(after < total, `after the reload only the missing parts went up: ${after} of ${total}`);
    check(before + after >= total, `every part went up once at least: ${before} + ${after}`);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await row(page, 'big.bin').waitFor();
    check((await row(page, 'big.bin').locator('td.size').textContent()) === '200.0 MiB', 'the big file is 200 MiB');
    check(await page.locator('#pending').isHidden(), 'no interrupted upload is left');
    step(`resumed: ${after} part PUTs after the reload, of ${total}`);
    await shoot(page, 'drive');

    // Sort by size: the big file first (folders always lead).
    await page.selectOption('#sort', 'size');
    const bySize = await keys(page);
    check(bySize[0] === 'album/' && bySize[1] === 'big.bin', `sorted by size: ${bySize}`);
    await page.selectOption('#sort', 'name');
    // Prefix search.
    await page.fill('#search', 'bi');
    await until(async () => (await keys(page)).join() === 'big.bin', 'the prefix search');
    await page.fill('#search', '');
    await until(async () => (await keys(page)).length === 3, 'the full listing');

    // Usage.
    await page.click('#usage');
    await page.locator('#usage-out', { hasText: '_my: 5 objects' }).waitFor();
    step('usage counted');

    // A large listing, a page at a time.
    await page.selectOption('#bucket', 'default');
    await until(async () => (await keys(page)).length === 200, 'the first page of the workspace');
    check(await page.locator('#more').isVisible(), 'a large listing offers more');
    await page.click('#more');
    await until(async () => (await keys(page)).length === PAGED, 'the whole workspace listing');
    check(await page.locator('#more').isHidden(), 'nothing more to load');
    // Move a key into a folder: CopyObject (a signed x-amz-copy-source) and DeleteObject.
    await row(page, 'k-204').getByRole('button', { name: 'Rename k-204' }).click();
    await page.fill('#rename-to', 'moved/k-204');
    await page.click('#dialog-ok');
    // The listing starts again at the first page; `moved/` sorts after every `k-…` key.
    await until(async () => page.locator('#more').isVisible(), 'the first page again');
    await page.click('#more');
    await row(page, 'moved/').waitFor();
    check(!(await keys(page)).includes('k-204'), 'the moved key left its old place');
    await row(page, 'moved/').locator('td.name button').click();
    await until(async () => (await keys(page)).join() === 'moved/k-204', 'the moved key in its folder');
    step('moved a key with CopyObject');
    await page.selectOption('#bucket', '_my');
    await until(async () => (await keys(page)).length === 3, 'the home listing');
    step(`paged through ${PAGED} keys`);

    // Navigate into the folder, breadcrumbs, preview.
    await row(page, 'album/').locator('td.name button').click();
    await until(async () => (await keys(page)).join() === 'album/notes/,album/a.txt,album/b.csv', 'the album listing');
    await row(page, 'album/notes/').waitFor();
    check((await page.$$eval('#crumbs li', (l) => l.map((x) => x.textContent))).join('/') === '_my/album', 'breadcrumbs');
    await row(page, 'album/a.txt').locator('td.name button').click();
    await page.locator('#dialog pre', { hasText: 'hello from the file browser' }).waitFor();
    step('previewed a text file');
    await page.click('#dialog-ok');
    await row(page, 'album/b.csv').locator('td.name button').click();
    await page.locator('#dialog table.csv td', { hasText: 'x, y' }).waitFor();
    await shoot(page, 'drive-preview');
    await page.click('#dialog-ok');
    step('previewed a CSV head');

    // Cancel a multipart upload half way: aborted in Drive (drive_ui.rs checks none is left).
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 25 * 1024 * 1024 });
    done = 0;
    await page.setInputFiles('#files', BIG);
    await until(() => done >= 2, 'two parts of the upload to cancel');
    await page.getByRole('button', { name: 'Cancel the upload of album/big.bin' }).click();
    await until(async () => (await uploadNote(page, 'album/big.bin')) === 'Cancelled', 'the upload to be cancelled');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await until(async () => page.evaluate(() => !Object.keys(localStorage).some((k) => k.includes('album/big.bin'))), 'the resume record to go');
    step('cancelled a multipart upload');

    // Drag and drop.
    const dt = await page.evaluateHandle(() => {
      const t = new DataTransfer();
      t.items.add(new File(['dropped\n'], 'dropped.txt', { type: 'text/plain' }));
      return t;
    });
    await page.dispatchEvent('#drop', 'dragover', { dataTransfer: dt });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: dt });
    await row(page, 'album/dropped.txt').waitFor();
    step('uploaded a dropped file');

    // Rename.
    await row(page, 'album/a.txt').getByRole('button', { name: 'Rename a.txt' }).click();
    await page.fill('#rename-to', 'album/renamed.txt');
    await page.click('#dialog-ok');
    await row(page, 'album/renamed.txt').waitFor();
    check(!(await keys(page)).includes('album/a.txt'), 'the old name is gone');
    step('renamed a file');

    // Share, opened in a fresh context without cookies.
    await row(page, 'album/renamed.txt').getByRole('button', { name: 'Share renamed.txt' }).click();
    await page.selectOption('#share-expiry', '3600');
    await page.click('#share-make');
    const link = await until(async () => page.inputValue('#share-url'), 'the share link');
    await page.click('#dialog-ok');
    check(link.startsWith(DRIVE) && link.includes('X-Amz-Expires=3600'), `a presigned link for an hour: ${link}`);
    const stranger = await newPage(browser, DRIVE);
    const got = await stranger.goto(link);
    check(got.status() === 200, `the shared link answers 200, not ${got.status()}`);
    check((await got.text()) === 'hello from the file browser\n', 'the shared link gives the bytes');
    check((await stranger.context().cookies()).length === 0, 'the stranger has no cookies');
    await stranger.context().close();
    step('a shared link works without a session');

    // Download: a presigned GET the browser saves.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      row(page, 'album/renamed.txt').getByRole('button', { name: 'Download renamed.txt' }).click(),
    ]);
    check(download.suggestedFilename() === 'renamed.txt', `downloaded as ${download.suggestedFilename()}`);
    check(fs.readFileSync(await download.path(), 'utf8') === 'hello from the file browser\n', 'the download has the bytes');
    step('downloaded a file');

    // New folder, then delete the whole album recursively.
    await page.click('#newfolder');
    await page.fill('#folder-name', 'empty');
    await page.click('#dialog-ok');
    await row(page, 'album/empty/').waitFor();
    await page.locator('#crumbs button', { hasText: '_my' }).click();
    await row(page, 'album/').getByRole('button', { name: 'Delete album/' }).click();
    await page.click('#dialog-ok');
    await until(async () => !(await keys(page)).includes('album/'), 'the album to be deleted');
    step('deleted a folder recursively');

    // Bob sees none of it.
    const bob = await newPage(browser, DRIVE);
    await signIn(bob, 'bob');
    await bob.getByText('This folder is empty.').waitFor();
    check((await keys(bob)).length === 0, 'bob sees no files in his home');
    const bobBuckets = await bob.$$eval('#bucket option', (os) => os.map((o) => o.value));
    check(bobBuckets.join(',') === '_my,default,team-a,team-b', `bob's buckets: ${bobBuckets}`);
    await bob.context().close();
    step('bob sees none of alice\'s files');

    // Sign out.
    await page.click('#signout');
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    const afterOut = await page.evaluate(async () => (await fetch('api/me')).status);
    check(afterOut === 401, `signed out, api/me answers 401, not ${afterOut}`);
    step('signed out');
  } finally {
    await browser.close();
  }
  check(problems.length === 0, `no dialogs, script errors or CSP violations: ${problems.join('; ')}`);
}

run().then(() => {
  step('all checks passed');
  process.exit(0);
}, (e) => {
  console.error(`drive-ui: ${e.stack || e}`);
  if (problems.length) console.error(`drive-ui: problems: ${problems.join('; ')}`);
  process.exit(1);
});
