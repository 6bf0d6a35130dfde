// Drive's file browser in headless Chromium, driven by playwright-core; run by
// s3-compat-tests/tests/drive_ui.rs, which starts Drive and the test OpenID provider.
//
// Env: DRIVE_URL, UI_TOOLS (where setup.sh installed playwright-core), ALBUM (a folder to
// upload), HOSTILE_FILE and HOSTILE (a file with a hostile name, and that name), BIG and
// BIG_SIZE (the big file and its size), ARTIFACTS (screenshot directory), PAGED (how many
// keys alice's `default` workspace holds: more than one listing page).
// Exits 0 when every check passes; prints what it does.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { accessible, check, env, launch, login, newPage, problems, shoot, until } from './browser.mjs';

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

// Signs `user` in; the callback request the browser made (its URL and cookies), to replay.
async function signIn(page, user) {
  const callback = page.waitForRequest((r) => r.url().startsWith(`${UI}callback`));
  await page.goto(UI);
  await login(page, user);
  await page.waitForURL((u) => u.href.startsWith(UI));
  await page.locator('#user', { hasText: `Signed in as ${user}` }).waitFor();
  step(`${user} signed in`);
  const request = await callback;
  return { url: request.url(), cookie: await request.headerValue('cookie') };
}

// The status and text of a GET of `url` sent with `cookie`, redirects not followed.
async function replay(url, cookie) {
  const response = await fetch(url, { headers: { cookie }, redirect: 'manual' });
  return { status: response.status, text: await response.text() };
}

// A folder to drop: a PNG drawn by the page (40 × 30) and a text file one level down.
async function dropFolder(page) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drive-ui-'));
  const folder = path.join(dir, 'dropped-folder');
  fs.mkdirSync(path.join(folder, 'deep'), { recursive: true });
  const png = await page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 40;
    c.height = 30;
    const g = c.getContext('2d');
    g.fillStyle = '#1a73e8';
    g.fillRect(0, 0, 40, 30);
    return c.toDataURL('image/png').split(',')[1];
  });
  fs.writeFileSync(path.join(folder, 'pic.png'), Buffer.from(png, 'base64'));
  fs.writeFileSync(path.join(folder, 'deep', 'd.txt'), 'deep\n');
  return folder;
}

// Drops the files or folders at `paths` on the page, as the operating system's drag does.
async function dropPaths(cdp, page, paths) {
  const box = await page.locator('#drop').boundingBox();
  const at = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
  const data = { items: [], files: paths, dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop']) {
    await cdp.send('Input.dispatchDragEvent', { type, ...at, data });
  }
}

// Presses Tab until the focus is on `locator` (at most `limit` times).
async function tabTo(page, locator, what, limit = 80) {
  for (let i = 0; i < limit; i += 1) {
    await page.keyboard.press('Tab');
    if (await locator.evaluate((e) => e === document.activeElement)) return;
  }
  throw new Error(`check failed: Tab never reached ${what}`);
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
    const callback = await signIn(page, 'alice');
    // The same callback again, login cookie and all: the provider refuses the used code.
    const replayed = await replay(callback.url, callback.cookie);
    check(replayed.status === 400 && replayed.text.includes('sign in again'), `a replayed sign-in answers 400: ${replayed.status} ${replayed.text.slice(0, 300)}`);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'drive_ui_session');
    check(session && session.httpOnly && session.sameSite === 'Lax', `the session cookie is HttpOnly and SameSite=Lax: ${JSON.stringify(session)}`);
    // Without the CSRF token, the session cookie alone signs nothing.
    const noCsrf = await page.evaluate(async () => (await fetch('api/presign', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method: 'GET', bucket: '_my' }) })).status);
    check(noCsrf === 403, `presign without the CSRF token answers 403, not ${noCsrf}`);
    const buckets = await page.$$eval('#bucket option', (os) => os.map((o) => o.value));
    check(buckets.join(',') === '_my,default,team-a', `alice's buckets: ${buckets}`);
    await page.getByText('This folder is empty.').waitFor();
    await accessible(page, 'an empty folder');

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
    const okParts = new Map(); // part number → 200 answers
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (r.method() === 'PUT' && u.searchParams.has('partNumber')) {
        if (reloaded) after += 1; else before += 1;
      }
      if (r.method() === 'GET' && u.searchParams.has('uploadId')) listParts += 1;
    });
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (r.request().method() === 'PUT' && u.searchParams.has('partNumber') && r.status() === 200) {
        done += 1;
        const n = u.searchParams.get('partNumber');
        okParts.set(n, (okParts.get(n) || 0) + 1);
      }
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
    // The network drops for a while: the upload waits, then goes on by itself.
    const resumedFrom = done;
    await until(() => done >= resumedFrom + 3, 'three parts after the reload');
    await cdp.send('Network.emulateNetworkConditions', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await until(async () => (await uploadNote(page, 'big.bin')) === 'Waiting for the network…', 'the upload to wait for the network');
    await page.waitForTimeout(3000);
    await shoot(page, 'drive-offline');
    await accessible(page, 'an upload waiting for the network');
    const offlineDone = done;
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 25 * 1024 * 1024 });
    step(`the network dropped after ${offlineDone - resumedFrom} parts of the resumed upload, and came back`);
    await until(async () => (await uploadNote(page, 'big.bin').catch(() => '')) === 'Done', 'the big upload to finish', 300_000, 500);
    check(done > offlineDone, 'parts went up after the network came back');
    const twice = [...okParts].filter(([, c]) => c > 1).map(([n]) => n);
    check(twice.length === 0, `no completed part was sent again: parts ${twice} were`);
    check(okParts.size === total, `every part completed once: ${okParts.size} of ${total}`);
    check(listParts >= 1, 'the resumed upload asked which parts are there (ListParts)');
    check(after < total, `after the reload only the missing parts went up: ${after} of ${total}`);
    check(before + after >= total, `every part went up once at least: ${before} + ${after}`);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await row(page, 'big.bin').waitFor();
    check((await row(page, 'big.bin').locator('td.size').textContent()) === '200.0 MiB', 'the big file is 200 MiB');
    check(await page.locator('#pending').isHidden(), 'no interrupted upload is left');
    step(`resumed: ${after} part PUTs after the reload, of ${total}`);
    await shoot(page, 'drive');
    await accessible(page, 'the file listing with uploads');

    // Rename the 200 MiB file in `_my` and back: CopyObject naming `_my` as its source.
    const copies = [];
    page.on('request', (r) => {
      const source = r.headers()['x-amz-copy-source'];
      if (r.method() === 'PUT' && source) copies.push(source);
    });
    for (const [from, to] of [['big.bin', 'big-moved.bin'], ['big-moved.bin', 'big.bin']]) {
      await row(page, from).getByRole('button', { name: `Rename ${from}` }).click();
      await page.fill('#rename-to', to);
      await page.click('#dialog-ok');
      await row(page, to).waitFor();
      await until(async () => !(await keys(page)).includes(from), `${from} to leave its name`);
    }
    check(copies.join() === '/_my/big.bin,/_my/big-moved.bin', `renamed by server-side copies from _my: ${copies}`);
    step('renamed the 200 MiB file in _my and back');

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
    await accessible(page, 'the CSV preview');
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

    // A whole folder dropped from the file manager, with a subfolder.
    await dropPaths(cdp, page, [await dropFolder(page)]);
    await row(page, 'album/dropped-folder/').waitFor();
    await until(async () => (await page.locator('#upload-list li[data-key^="album/dropped-folder/"] .hint', { hasText: 'Done' }).count()) === 2, 'the dropped folder\'s two files');
    step('uploaded a dropped folder');

    // Keyboard only: into the folder, preview the image, close the preview.
    await page.locator('#search').focus();
    await tabTo(page, row(page, 'album/dropped-folder/').locator('td.name button'), 'the dropped folder');
    await page.keyboard.press('Enter');
    await until(async () => (await keys(page)).join() === 'album/dropped-folder/deep/,album/dropped-folder/pic.png', 'the dropped folder\'s listing');
    const pic = row(page, 'album/dropped-folder/pic.png').locator('td.name button');
    await page.locator('#search').focus();
    await tabTo(page, pic, 'the image');
    await page.keyboard.press('Enter');
    const img = page.locator('#dialog img.preview');
    await img.waitFor();
    const natural = await until(async () => img.evaluate((i) => i.complete && i.naturalWidth && `${i.naturalWidth}x${i.naturalHeight}`), 'the image to load');
    check(natural === '40x30', `the image preview shows the 40 × 30 picture: ${natural}`);
    await shoot(page, 'drive-image');
    await accessible(page, 'the image preview');
    await page.keyboard.press('Escape');
    await until(async () => !(await page.locator('#dialog').evaluate((d) => d.open)), 'Escape to close the preview');
    check(await pic.evaluate((e) => e === document.activeElement), 'the focus went back to the file');
    step('navigated and previewed an image with the keyboard');
    await page.locator('#crumbs button', { hasText: 'album' }).click();
    await row(page, 'album/dropped-folder/').waitFor();

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

    // Sign out; a copy of the session cookie is refused afterwards.
    const copied = (await page.context().cookies()).find((c) => c.name === 'drive_ui_session');
    const live = await fetch(`${UI}api/me`, { headers: { cookie: `drive_ui_session=${copied.value}` } });
    check(live.status === 200, `the copied session cookie works while signed in: ${live.status}`);
    await page.click('#signout');
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await accessible(page, 'the signed-out page');
    const afterOut = await page.evaluate(async () => (await fetch('api/me')).status);
    check(afterOut === 401, `signed out, api/me answers 401, not ${afterOut}`);
    const stale = await fetch(`${UI}api/me`, { headers: { cookie: `drive_ui_session=${copied.value}` } });
    check(stale.status === 401, `the copied session cookie is refused after signing out: ${stale.status}`);
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
