// The App Store's web UI in headless Chromium, driven by playwright-core; run by
// appstore/tests/ui.rs, which starts the App Store, Drive and the test OpenID provider.
//
// Env: APPSTORE_URL, UI_TOOLS (where setup.sh installed playwright-core), BUNDLE (a good
// bundle file), BAD_BUNDLE (one whose App.Version is wrong), HOSTILE (the title of an app
// already imported and of the curators' tag `reviewed`, which must show as text), ARTIFACTS
// (screenshot directory),
// START_TIMEOUT_MS (how long an instance may take to start).
// Exits 0 when every check passes; prints what it does.
import fs from 'node:fs';
import path from 'node:path';
import { accessible, check, env, launch, login, newPage, problems, shoot, until } from '../../../s3-compat-tests/ui/browser.mjs';

const URL_ = env('APPSTORE_URL');
const HOSTILE = env('HOSTILE');
const ARTIFACTS = env('ARTIFACTS');
const START_TIMEOUT = Number(env('START_TIMEOUT_MS'));
const step = (what) => console.log(`ui: ${what}`);

// Signs `user` in through the provider's login form, starting from the catalogue.
async function signIn(page, user) {
  await page.goto(`${URL_}/`);
  await login(page, user);
  await page.waitForURL(`${URL_}/`);
  await page.locator('.who', { hasText: user }).waitFor();
  step(`${user} signed in`);
}

// Drops the file at `file` on the import zone, recording what the status area shows.
async function drop(page, file) {
  await page.evaluate(() => {
    window.importSeen = [];
    const status = document.querySelector('.import-status');
    const progress = document.querySelector('progress');
    const note = () => window.importSeen.push(`${progress.hidden ? '' : `[${progress.value}%] `}${status.textContent}`);
    new MutationObserver(note).observe(status, { childList: true, subtree: true, characterData: true });
    new MutationObserver(note).observe(progress, { attributes: true });
  });
  const data = fs.readFileSync(file).toString('base64');
  const dt = await page.evaluateHandle(({ data, name }) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const t = new DataTransfer();
    t.items.add(new File([bytes], name, { type: 'application/zip' }));
    return t;
  }, { data, name: path.basename(file) });
  await page.dispatchEvent('#dropzone', 'dragover', { dataTransfer: dt });
  await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: dt });
}

const cardTitles = (page) => page.$$eval('#apps .card-title', (els) => els.map((e) => e.textContent));

// What the API says of app `id`, asked with `page`'s session.
const appOf = (page, id) => page.evaluate(async (i) => (await fetch(`/api/v1/apps/${i}`)).json(), id);

// Controls only an app's owner or an admin gets.
const OWNER_CONTROLS = '#app-visibility, #delete-app';

// Opens the app page at `url` and waits until it has loaded all it shows.
async function openApp(page, url) {
  await page.goto(url);
  await page.locator('#versions + table tbody tr').first().waitFor();
  await page.waitForLoadState('networkidle');
}

// The phase the instance's card shows.
const phaseOf = (page, id) => page.getAttribute(`li[data-instance="${id}"]`, 'data-phase').catch(() => null);

async function run() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await launch();
  try {
    // The page's headers.
    const head = await fetch(`${URL_}/`);
    const csp = head.headers.get('content-security-policy') || '';
    check(csp.includes("default-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe'), `strict CSP: ${csp}`);
    check(head.headers.get('cache-control') === 'no-store', 'the page is not cached');
    const css = (await head.text()).match(/href="(\/ui\/[0-9a-f]+\/app\.css)"/);
    check(css, 'the page links its versioned stylesheet');
    const asset = await fetch(`${URL_}${css[1]}`);
    check(asset.ok && /immutable/.test(asset.headers.get('cache-control')), `assets are cached for long: ${asset.headers.get('cache-control')}`);

    const page = await newPage(browser, URL_);
    await page.goto(`${URL_}/`);
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await signIn(page, 'alice');
    // Keyboard: the first Tab reaches the skip link.
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement?.className === 'skip'), 'the skip link comes first');

    // The catalogue: the hostile title is text, no element came out of it.
    await page.waitForSelector('#apps .card');
    check((await cardTitles(page)).includes(HOSTILE), 'the hostile title shows as text');
    check(await page.$$eval('img[src="x"]', (e) => e.length) === 0, 'no <img src=x> in the page');
    check(await page.$$eval('#apps .card', (e) => e.length) === 1, 'one card per app, whatever its versions');

    // Import by drag-and-drop: progress, then the new app.
    await drop(page, env('BUNDLE'));
    await page.getByText(/^Imported Drive writer 0\.0\.1/).waitFor({ timeout: 60_000 });
    const seen = await page.evaluate(() => window.importSeen);
    step(`import showed: ${JSON.stringify(seen)}`);
    check(seen.some((s) => s.includes('Uploading')), 'upload progress shown');
    check(seen.some((s) => /\[\d+%\]/.test(s)), 'a progress bar shown');
    await until(async () => (await cardTitles(page)).includes('Drive writer'), 'the new app in the catalogue');
    check(await page.locator('.panel').getByText('alice', { exact: true }).count() === 1, 'the owner is shown');
    step('imported by drag-and-drop');

    // A bad bundle: the error names its field.
    await drop(page, env('BAD_BUNDLE'));
    const dt = page.locator('.field-errors dt');
    await dt.waitFor();
    check(await dt.textContent() === 'App.Version', `the field in error: ${await dt.textContent()}`);
    const dd = await page.locator('.field-errors dd').textContent();
    check(dd.startsWith('Must be a semantic version'), `the error in words: ${dd}`);
    step(`bad bundle refused: App.Version: ${dd}`);

    // Tags filter, search.
    await page.click('button[data-tag="demo"]');
    await until(async () => {
      const t = await cardTitles(page);
      return t.length === 1 && t[0] === HOSTILE;
    }, 'the tag filter');
    check(page.url().endsWith('/?tag=demo'), `the filter is in the address: ${page.url()}`);
    await page.click('button[data-tag=""]');
    await until(async () => (await cardTitles(page)).length === 2, 'all apps again');
    await page.fill('#search', 'drive');
    await until(async () => {
      const t = await cardTitles(page);
      return t.length === 1 && t[0] === 'Drive writer';
    }, 'the search');
    await page.fill('#search', 'no such thing anywhere');
    await page.getByText('No app matches.').waitFor();
    await page.fill('#search', '');
    await until(async () => (await cardTitles(page)).length === 2, 'all apps after the search');
    step('tags and search filter the catalogue');
    await shoot(page, 'catalogue');
    await accessible(page, 'the catalogue page');

    // The app page: title as text, Markdown rendered safely, screenshots, versions.
    await page.locator('.card', { hasText: HOSTILE }).locator('a.card-link').click();
    await page.waitForURL(/\/apps\//);
    await page.locator('.long-description h2').waitFor();
    check(await page.textContent('h1') === HOSTILE, 'the app page title is text');
    check(await page.textContent('.long-description h2') === 'About the showcase', 'a heading');
    check(await page.locator('.long-description em').textContent() === 'small', 'emphasis');
    check(await page.locator('.long-description strong').textContent() === 'bold', 'strong');
    check(await page.locator('.long-description pre code').textContent() === 'fn main() {}', 'a code block');
    const links = await page.$$eval('.long-description a', (as) => as.map((a) => a.getAttribute('href')));
    check(JSON.stringify(links) === '["https://example.com/docs"]', `only the http(s) link is a link: ${links}`);
    check((await page.textContent('.long-description')).includes('<script>alert(1)</script>'), 'script tags stay text');
    check(await page.$$eval('.long-description script, .long-description img', (e) => e.length) === 0, 'no elements from markup');
    const shots = page.locator('.screenshots img');
    check(await shots.count() === 1, 'one screenshot');
    await until(() => shots.evaluate((img) => img.complete && img.naturalWidth > 0), 'the screenshot loads');
    check(await page.locator('#versions + table tbody tr').count() === 2, 'two versions listed');
    check((await page.locator('#versions + table').textContent()).includes('1.0.0'), 'the older version');
    step('the app page renders');

    // Its owner manages it: delete, the tag anyone may assign but not the curators' one,
    // and who may see it, which the API and anybody then see.
    const showcaseUrl = page.url();
    const showcaseId = decodeURIComponent(showcaseUrl.split('/apps/')[1]);
    const manage = page.locator('.manage');
    await manage.waitFor();
    check(await page.locator('#delete-app').textContent() === 'Delete version 1.2.0', 'the owner may delete');
    check(await manage.getByRole('button', { name: 'Remove tag demo' }).count() === 1, 'the owner may take demo off');
    check(await page.locator('#add-tag').isHidden(), 'no tag left that alice may add: reviewed is for curators');
    await page.selectOption('#app-visibility', 'PUBLIC');
    await manage.getByText('Visibility changed: Everyone, signed in or not.').waitFor();
    check((await appOf(page, showcaseId)).visibility === 'PUBLIC', 'the API has the new visibility');
    const anonymous = await fetch(`${URL_}/api/v1/apps/${showcaseId}`);
    check(anonymous.ok && (await anonymous.json()).visibility === 'PUBLIC', `anyone sees the app now: ${anonymous.status}`);
    await until(async () => (await page.textContent('#versions + table tr[aria-current="true"]')).includes('Everyone'), 'the versions table to follow');
    check((await page.textContent('.details')).includes('Everyone, signed in or not'), 'the details follow');
    await shoot(page, 'app');
    await accessible(page, 'the app page');
    step('the owner made the app public');

    // Launch the imported app and watch its phases.
    await page.goto(`${URL_}/`);
    await page.locator('.card', { hasText: 'Drive writer' }).locator('a.card-link').click();
    await page.waitForURL(/\/apps\//);
    const writerUrl = page.url();
    await page.click('#launch');
    await page.waitForURL(/\/instances#/);
    const id = decodeURIComponent(new URL(page.url()).hash.slice(1));
    const phases = [];
    await until(async () => {
      const p = await phaseOf(page, id);
      if (p && phases.at(-1) !== p) {
        phases.push(p);
        step(`phase ${p}`);
      }
      if (p === 'FAILED') {
        const why = await page.locator(`li[data-instance="${id}"] .reason`).textContent();
        throw new Error(`the instance failed: ${why}`);
      }
      return p === 'RUNNING';
    }, 'the instance to run', START_TIMEOUT, 200);
    check(phases.length >= 2, `phases before RUNNING were shown: ${phases}`);
    const order = ['PENDING', 'SOURCING', 'INSTALLING', 'STARTING', 'RUNNING'];
    check(phases.every((p, i) => i === 0 || order.indexOf(p) > order.indexOf(phases[i - 1])), `phases in order: ${phases}`);
    const card = page.locator(`li[data-instance="${id}"]`);

    // Open it through the router (DOMAIN routing: <id>.localhost) and see the Wave page.
    const [app] = await Promise.all([
      page.context().waitForEvent('page'),
      card.getByRole('link', { name: 'Open' }).click(),
    ]);
    await app.waitForLoadState();
    check(new URL(app.url()).hostname === `${id}.localhost`, `the instance's own host: ${app.url()}`);
    await app.getByText('hello from app.toml').waitFor({ timeout: 90_000 });
    await app.screenshot({ path: path.join(ARTIFACTS, 'wave-app-desktop.png') });
    await app.close();
    step('the Wave app opened through the router');

    // Logs follow.
    await card.getByRole('button', { name: 'Logs' }).click();
    await until(async () => ((await card.locator('.log').textContent()) || '').includes('boto3 start'), 'the app\'s output in the log', 60_000);
    await card.getByText('Following the log').waitFor();
    await shoot(page, 'instances');
    await accessible(page, 'the instances page');
    await card.getByRole('button', { name: 'Logs' }).click();
    step('the log follows');

    // Visibility.
    await card.locator('select').selectOption('ALL_USERS');
    await card.getByText('Visibility changed.').waitFor();
    await card.locator('select').selectOption('PRIVATE');
    await until(async () => {
      const r = await page.evaluate(async (i) => (await (await fetch(`/api/v1/instances/${i}`)).json()).visibility, id);
      return r === 'PRIVATE';
    }, 'visibility back to PRIVATE');
    step('visibility changes');

    // Suspend, resume.
    await card.getByRole('button', { name: 'Suspend' }).click();
    await until(async () => (await phaseOf(page, id)) === 'SUSPENDED', 'the instance to suspend', 60_000);
    check(await card.getByRole('link', { name: 'Open' }).isHidden(), 'no Open while suspended');
    await card.getByRole('button', { name: 'Resume' }).click();
    await until(async () => (await phaseOf(page, id)) === 'RUNNING', 'the instance to run again', START_TIMEOUT);
    step('suspended and resumed');

    // Bob sees none of alice's private things, and may not open her instance.
    const bob = await newPage(browser, URL_);
    await signIn(bob, 'bob');
    await bob.waitForSelector('#apps .card');
    const bobSees = await cardTitles(bob);
    check(bobSees.includes(HOSTILE) && !bobSees.includes('Drive writer'), `bob's catalogue: ${bobSees}`);
    await bob.goto(`${URL_}/instances`);
    await bob.getByText('No instances.').waitFor();
    check(await bob.locator('li.instance').count() === 0, 'bob lists no instance');
    const instanceUrl = await card.getByRole('link', { name: 'Open' }).getAttribute('href');
    await bob.goto(instanceUrl);
    await bob.getByText('You may not open this app instance.').waitFor();
    await bob.goto(`${URL_}/instances?all`);
    await bob.getByText('Only administrators see every instance.').waitFor();
    // On alice's app he may only assign what the API lets any full-access user assign.
    await openApp(bob, showcaseUrl);
    await bob.locator('.manage').waitFor();
    check(await bob.locator(OWNER_CONTROLS).count() === 0, 'bob may not change or delete alice\'s app');
    check(await bob.locator('#new-tag-name, #add-tag option[value="reviewed"]').count() === 0, 'bob may not create tags nor assign the curators\' one');
    await bob.context().close();
    step('bob sees none of it');

    // A visitor sees the public app, and no control at all.
    const erin = await newPage(browser, URL_);
    await signIn(erin, 'erin');
    await erin.waitForSelector('#apps .card');
    check(JSON.stringify(await cardTitles(erin)) === JSON.stringify([HOSTILE]), `erin's catalogue: ${await cardTitles(erin)}`);
    await openApp(erin, showcaseUrl);
    check(await erin.locator('.manage, #add-tag, #app-visibility, #delete-app').count() === 0, 'no controls for a visitor');
    await erin.context().close();
    step('a visitor sees the public app and no controls');

    // A curator adds the curators' tag, its hostile title shown as text; nothing else.
    const carol = await newPage(browser, URL_);
    await signIn(carol, 'carol');
    await openApp(carol, showcaseUrl);
    const carolManage = carol.locator('.manage');
    await carolManage.waitFor();
    check(await carol.locator(`${OWNER_CONTROLS}, #new-tag-name`).count() === 0, 'carol may not change, delete or create');
    const choice = await carol.textContent('#add-tag option[value="reviewed"]');
    check(choice === `${HOSTILE} (reviewed)`, `the tag's title as text: ${choice}`);
    check(await carol.$$eval('img[src="x"]', (e) => e.length) === 0, 'no <img src=x> from the tag title');
    await carol.selectOption('#add-tag', 'reviewed');
    await carolManage.getByRole('button', { name: 'Add', exact: true }).click();
    await carolManage.getByText('Added tag reviewed.').waitFor();
    await carol.locator('.app-head .tags a', { hasText: 'reviewed' }).waitFor();
    check((await appOf(carol, showcaseId)).tags.includes('reviewed'), 'the API has the tag');
    await carol.goto(`${URL_}/`);
    await carol.locator('button[data-tag="reviewed"]').waitFor();
    await carol.context().close();
    step('a curator tagged the app');

    // An admin sees every app and instance.
    const dave = await newPage(browser, URL_);
    await signIn(dave, 'dave');
    await dave.getByRole('link', { name: 'Admin' }).click();
    await dave.waitForURL(`${URL_}/admin`);
    await dave.getByRole('link', { name: 'Drive writer' }).waitFor();
    await shoot(dave, 'admin');
    await accessible(dave, 'the admin page');
    await dave.goto(`${URL_}/instances?all`);
    await dave.locator(`li[data-instance="${id}"]`).getByText('owner alice').waitFor();
    await shoot(dave, 'admin-instances');
    await accessible(dave, 'the admin instances page');
    step('the admin sees every app and instance');

    // An admin may do it all: a hostile tag name is refused in words, a new tag is created
    // and added, the curators' tag taken off; the catalogue's filter follows.
    await openApp(dave, showcaseUrl);
    const daveManage = dave.locator('.manage');
    await daveManage.waitFor();
    check(await dave.locator(OWNER_CONTROLS).count() === 2, 'an admin may change and delete any app');
    await dave.fill('#new-tag-name', HOSTILE);
    await daveManage.getByRole('button', { name: 'Create and add' }).click();
    await daveManage.getByText(/^A tag name is 1 to 63 letters, digits/).waitFor();
    await dave.fill('#new-tag-name', 'featured');
    await dave.fill('#new-tag-title', 'Featured');
    await daveManage.getByRole('button', { name: 'Create and add' }).click();
    await daveManage.getByText('Created tag featured and added it.').waitFor();
    check(await dave.inputValue('#new-tag-name') === '', 'the form is cleared');
    await daveManage.getByRole('button', { name: 'Remove tag reviewed' }).click();
    await daveManage.getByText('Removed tag reviewed.').waitFor();
    check(await dave.evaluate(() => document.activeElement?.id) === 'add-tag', 'the keyboard stays in the tag editor');
    const tagsNow = (await appOf(dave, showcaseId)).tags.sort();
    check(JSON.stringify(tagsNow) === '["demo","featured"]', `the API has the tags: ${tagsNow}`);
    check(await dave.$$eval('.app-head .tags a', (as) => as.map((a) => a.textContent).join()) === 'demo,featured', 'the head shows them');
    check(await dave.$$eval('img[src="x"]', (e) => e.length) === 0, 'no <img src=x> in the admin\'s page');
    await shoot(dave, 'app-manage');
    await accessible(dave, 'the app manage page');
    await dave.goto(`${URL_}/`);
    await dave.locator('button[data-tag="featured"]').waitFor();
    check(await dave.locator('button[data-tag="reviewed"]').count() === 0, 'no filter for a tag no app carries');
    await dave.click('button[data-tag="featured"]');
    await until(async () => JSON.stringify(await cardTitles(dave)) === JSON.stringify([HOSTILE]), 'the featured filter');
    await dave.context().close();
    step('the admin created, added and removed tags');

    // Deleting an app with an instance is refused, in words, after a confirmation in the
    // page, all by keyboard.
    await page.goto(writerUrl);
    const del = page.locator('#delete-app');
    await del.focus();
    await page.keyboard.press('Enter');
    check(await page.evaluate(() => document.activeElement?.textContent) === 'Yes, delete', 'the confirmation takes the focus');
    await page.keyboard.press('Enter');
    await page.getByText('The app has 1 instance(s); terminate them before deleting it.').waitFor();
    check(await del.isVisible(), 'the delete button is back');
    check(await page.evaluate(() => document.activeElement?.id) === 'delete-app', 'and has the focus');
    step('deleting an app with an instance is refused');
    await page.goto(`${URL_}/instances`);

    // Terminate, after a confirmation in the page.
    await card.getByRole('button', { name: 'Terminate' }).click();
    await card.getByRole('button', { name: 'Yes, terminate' }).click();
    await page.getByText('No instances.').waitFor({ timeout: 60_000 });
    step('terminated');

    // Now the app may go; the catalogue after.
    await page.goto(writerUrl);
    await page.click('#delete-app');
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.waitForURL(`${URL_}/`);
    await page.waitForSelector('#apps .card');
    check(!(await cardTitles(page)).includes('Drive writer'), `the app is gone from the catalogue: ${await cardTitles(page)}`);
    const gone = await page.evaluate(async (u) => (await fetch(u.replace('/apps/', '/api/v1/apps/'))).status, writerUrl);
    check(gone === 404, `the API has no such app: ${gone}`);
    step('deleted the app');

    // Sign out.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    const me = await page.evaluate(async () => (await fetch('/auth/session')).status);
    check(me === 401, `signed out: ${me}`);
    step('signed out');
  } finally {
    await browser.close();
  }
  check(problems.length === 0, `no dialogs, script errors or CSP violations:\n${problems.join('\n')}`);
}

try {
  await run();
  step('all checks passed');
} catch (e) {
  console.error(`ui: FAILED: ${e.stack || e}`);
  for (const p of problems) console.error(`ui: also: ${p}`);
  process.exit(1);
}
