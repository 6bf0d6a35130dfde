// An app's page: icon, title, description, the long description rendered from Markdown,
// screenshots, its versions, the button that launches it, and for those the API lets:
// who may see it, its tags, and deleting it. The server decides; the page only hides what
// it would refuse, and says in words why when it refuses anyway.

import { api, allApps } from './api.js';
import { add, h, notice, size, visibilitySelect, when, VISIBILITY } from './dom.js';
import { markdown } from './markdown.js';
import { compareVersions, icon, tagLabel } from './catalogue.js';

// The API address of `app`.
const appPath = (app) => `/api/v1/apps/${encodeURIComponent(app.id)}`;

// Whether `session` may change or delete `app`: its owner or an admin.
function mayManage(session, app) {
  return Boolean(session && (session.admin || session.subject === app.ownerSubject));
}

// Whether `session` may put `tag` on apps or take it off: an admin, or a full-access user
// holding one of the tag's admin roles (any full-access user when it names none).
function mayTag(session, tag) {
  const roles = tag.adminRoles || [];
  return Boolean(session?.fullAccess
    && (session.admin || !roles.length || roles.some((r) => (session.roles || []).includes(r))));
}

// A tag as a choice: its title, and its name when that differs.
function tagChoice(tag) {
  return tag.title && tag.title !== tag.name ? `${tag.title} (${tag.name})` : tag.name;
}

// The launch button and where its progress shows; a sign-in link for nobody.
function launcher(app, session) {
  if (!session) return h('a', { class: 'button', href: `/auth/login?returnTo=${encodeURIComponent(location.pathname)}` }, 'Sign in to launch');
  const status = h('div', { 'aria-live': 'polite', class: 'launch-status' });
  const launch = h('button', { type: 'button', id: 'launch' }, 'Launch');
  launch.addEventListener('click', async () => {
    launch.disabled = true;
    status.replaceChildren(h('p', { text: 'Starting an instance…' }));
    try {
      const inst = await api('POST', `${appPath(app)}/instances`, {});
      location.assign(`/instances#${encodeURIComponent(inst.id)}`);
    } catch (e) {
      launch.disabled = false;
      status.replaceChildren(notice('error', e.message));
    }
  });
  return [launch, status];
}

// Fills `list` with the tags `names`, each a link to the catalogue filtered by it.
function showTagLinks(list, names) {
  list.replaceChildren(...names.map((t) => h('li', {}, h('a', { href: `/?tag=${encodeURIComponent(t)}` }, tagLabel(t)))));
  list.hidden = !names.length;
}

// The screenshots of `app`, if it has any.
function screenshots(app) {
  if (!app.screenshotUrls.length) return null;
  return h('section', { 'aria-labelledby': 'shots' },
    h('h2', { id: 'shots' }, 'Screenshots'),
    h('ul', { class: 'screenshots' }, app.screenshotUrls.map((url, i) => h('li', {},
      h('a', { href: url, target: '_blank', rel: 'noopener' },
        h('img', { src: url, alt: `Screenshot ${i + 1} of ${app.title || app.name}`, loading: 'lazy' }))))));
}

// The long description of `app`, rendered into `about`.
async function showAbout(about, app) {
  if (!app.hasLongDescription) return;
  try {
    about.replaceChildren(markdown(await api('GET', `${appPath(app)}/long-description`)));
  } catch (e) {
    about.replaceChildren(notice('error', e.message));
  }
}

// One row of the versions table; `app` is the version this page shows.
function versionRow(v, app) {
  return h('tr', { 'aria-current': v.id === app.id ? 'true' : null },
    h('td', { 'data-label': 'Version' }, v.id === app.id ? h('strong', { text: `${v.version} (this one)` })
      : h('a', { href: `/apps/${encodeURIComponent(v.id)}`, text: v.version })),
    h('td', { 'data-label': 'Visibility', text: VISIBILITY[v.visibility] || v.visibility }),
    h('td', { 'data-label': 'Size', text: size(v.bundleSize) }),
    h('td', { 'data-label': 'Imported', text: when(v.createdAt) }));
}

// Every version of `app`'s name, newest first, into `tbody`.
async function showVersions(tbody, app) {
  try {
    const all = (await allApps({ name: app.name })).sort((a, b) => compareVersions(b.version, a.version));
    tbody.replaceChildren(...all.map((v) => versionRow(v, app)));
  } catch (e) {
    tbody.replaceChildren(h('tr', {}, h('td', { colspan: 4 }, notice('error', e.message))));
  }
}

// Who may see `app`, changed as soon as another is chosen; back to what it was if refused.
function visibilityControl(app, changed) {
  const status = h('div', { 'aria-live': 'polite' });
  let current = app.visibility;
  const select = visibilitySelect('app-visibility', current, async () => {
    status.replaceChildren();
    try {
      const updated = await api('PATCH', appPath(app), { visibility: select.value });
      current = updated.visibility;
      status.replaceChildren(notice('ok', `Visibility changed: ${VISIBILITY[current] || current}.`));
      changed(updated);
    } catch (e) {
      select.value = current;
      status.replaceChildren(notice('error', e.message));
    }
  });
  return h('div', {},
    h('h3', {}, 'Visibility'),
    h('div', { class: 'field inline' }, h('label', { for: 'app-visibility' }, `Who may see version ${app.version}`), select),
    status);
}

// Deleting `app`, confirmed in the page; the catalogue after, the API's refusal in words.
function deleteControl(app) {
  const status = h('div', { 'aria-live': 'polite' });
  const start = h('button', { type: 'button', class: 'danger', id: 'delete-app' }, `Delete version ${app.version}`);
  const yes = h('button', { type: 'button', class: 'danger' }, 'Yes, delete');
  const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const confirmBox = h('span', { class: 'confirm', hidden: true },
    h('span', { text: `Delete version ${app.version} for good? Its bundle goes too.` }), yes, no);
  const asking = (ask) => {
    start.hidden = ask;
    confirmBox.hidden = !ask;
    (ask ? yes : start).focus();
  };
  start.addEventListener('click', () => {
    status.replaceChildren();
    asking(true);
  });
  no.addEventListener('click', () => asking(false));
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await api('DELETE', appPath(app));
      location.assign('/');
    } catch (e) {
      yes.disabled = false;
      asking(false);
      status.replaceChildren(notice('error', e.message));
    }
  });
  return h('div', {}, h('h3', {}, 'Delete'), h('div', { class: 'actions' }, start, confirmBox), status);
}

// One tag on the app, with a remove button when the editor's user may take it off.
function tagItem(ed, name) {
  const tag = ed.tags.find((t) => t.name === name);
  return h('li', {}, tagLabel(name),
    tag && mayTag(ed.session, tag) ? h('button', {
      type: 'button', class: 'secondary', 'aria-label': `Remove tag ${name}`,
      onclick: () => retag(ed, 'DELETE', name, `Removed tag ${name}.`),
    }, 'Remove') : null);
}

// Draws the app's tags and the choice of the others the editor's user may add.
function drawTags(ed) {
  const on = ed.app.tags;
  ed.list.replaceChildren(...(on.length ? on.map((name) => tagItem(ed, name)) : [h('li', { class: 'empty' }, 'No tags yet.')]));
  const free = ed.tags.filter((t) => mayTag(ed.session, t) && !on.includes(t.name));
  ed.choice.replaceChildren(...free.map((t) => h('option', { value: t.name, text: tagChoice(t) })));
  ed.adding.hidden = !free.length;
}

// Keeps the keyboard's place when the focused button went away with its tag.
function keepFocus(ed) {
  const here = document.activeElement;
  if (!ed.root.contains(here) || here.closest('[hidden]')) (ed.adding.hidden ? ed.heading : ed.choice).focus();
}

// Puts tag `name` on the app (PUT) or takes it off (DELETE), then draws what the server has.
async function retag(ed, method, name, done) {
  ed.status.replaceChildren();
  try {
    await api(method, `${appPath(ed.app)}/tags/${encodeURIComponent(name)}`);
    ed.app = await api('GET', appPath(ed.app));
    drawTags(ed);
    keepFocus(ed);
    ed.status.replaceChildren(notice('ok', done));
    ed.changed(ed.app);
  } catch (e) {
    ed.status.replaceChildren(notice('error', e.message));
  }
}

// Creates tag `name` (titled `title` when given), then puts it on the app.
async function createTag(ed, name, title) {
  ed.status.replaceChildren();
  try {
    await api('POST', '/api/v1/tags', title ? { name, title } : { name });
    ed.tags = (await api('GET', '/api/v1/tags')).tags;
    drawTags(ed);
  } catch (e) {
    ed.status.replaceChildren(notice('error', e.message));
    return false;
  }
  await retag(ed, 'PUT', name, `Created tag ${name} and added it.`);
  return true;
}

// An admin's form to create a tag and put it on the app.
function createForm(ed) {
  const name = h('input', { type: 'text', id: 'new-tag-name', required: true, maxlength: 63, autocomplete: 'off', 'aria-describedby': 'new-tag-hint' });
  const title = h('input', { type: 'text', id: 'new-tag-title', maxlength: 256, autocomplete: 'off' });
  const form = h('form', { class: 'inline-form', 'aria-label': 'Create a tag' },
    h('div', { class: 'field' },
      h('label', { for: 'new-tag-name' }, 'New tag'),
      h('span', { id: 'new-tag-hint', class: 'muted small' }, 'Letters, digits, -, _ or .'),
      name),
    h('div', { class: 'field' }, h('label', { for: 'new-tag-title' }, 'Its title (optional)'), title),
    h('button', { type: 'submit' }, 'Create and add'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (await createTag(ed, name.value.trim(), title.value.trim())) form.reset();
  });
  return form;
}

// The tags of `app` for `session` to add and remove, given every tag; an admin may create
// one too. `null` when it may assign none.
function tagEditor(session, app, tags, changed) {
  if (!session.admin && !tags.some((t) => mayTag(session, t))) return null;
  const ed = {
    session, app, tags, changed,
    heading: h('h3', { id: 'tags-title', tabindex: -1 }, 'Tags'),
    list: h('ul', { class: 'tags tag-edit', 'aria-labelledby': 'tags-title' }),
    choice: h('select', { id: 'add-tag' }),
    status: h('div', { 'aria-live': 'polite' }),
  };
  ed.adding = h('form', { class: 'inline-form', 'aria-label': 'Add a tag' },
    h('div', { class: 'field' }, h('label', { for: 'add-tag' }, 'Add a tag'), ed.choice),
    h('button', { type: 'submit' }, 'Add'));
  ed.adding.addEventListener('submit', (e) => {
    e.preventDefault();
    retag(ed, 'PUT', ed.choice.value, `Added tag ${ed.choice.value}.`);
  });
  ed.root = h('div', {}, ed.heading, ed.list, ed.adding, session.admin ? createForm(ed) : null, ed.status);
  drawTags(ed);
  return ed.root;
}

// The panel for those the API lets change `app`, into `slot`; nothing for anyone else.
// `changed(app)` hears of each change, with the app as the server now has it.
async function showManager(slot, session, app, changed) {
  try {
    const tags = session?.fullAccess ? (await api('GET', '/api/v1/tags')).tags : [];
    const own = mayManage(session, app);
    const tagging = session?.fullAccess ? tagEditor(session, app, tags, changed) : null;
    if (!own && !tagging) return;
    slot.replaceChildren(h('section', { class: 'panel manage', 'aria-labelledby': 'manage' },
      h('h2', { id: 'manage' }, 'Manage this app'),
      own ? visibilityControl(app, changed) : null,
      tagging,
      own ? deleteControl(app) : null));
  } catch (e) {
    slot.replaceChildren(notice('error', e.message));
  }
}

// The app page of app `id` into `main`.
export async function appPage(main, session, id) {
  const app = await api('GET', `/api/v1/apps/${encodeURIComponent(id)}`);
  document.title = `${app.title || app.name} · App Store`;
  const about = h('section', { class: 'long-description', 'aria-label': 'About this app' });
  const versions = h('tbody');
  const tagLinks = h('ul', { class: 'tags', 'aria-label': 'Tags' });
  const seenBy = h('dd');
  const manage = h('div');
  const changed = (fresh) => {
    showTagLinks(tagLinks, fresh.tags);
    seenBy.textContent = VISIBILITY[fresh.visibility] || fresh.visibility;
    showVersions(versions, fresh);
  };
  showTagLinks(tagLinks, app.tags);
  seenBy.textContent = VISIBILITY[app.visibility] || app.visibility;
  main.replaceChildren();
  add(main, [
    h('p', {}, h('a', { href: '/' }, '← All apps')),
    h('div', { class: 'app-head' },
      icon(app, 96),
      h('div', {},
        h('h1', { text: app.title || app.name }),
        h('p', { class: 'muted', text: `${app.name} · version ${app.version} · by ${app.owner}` }),
        h('p', { class: 'lead', text: app.description || '' }),
        tagLinks,
        launcher(app, session))),
    about,
    screenshots(app),
    h('section', { 'aria-labelledby': 'versions' },
      h('h2', { id: 'versions' }, 'Versions'),
      h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['Version', 'Visibility', 'Size', 'Imported'].map((c) => h('th', { scope: 'col' }, c)))),
        versions)),
    h('section', { 'aria-labelledby': 'details' },
      h('h2', { id: 'details' }, 'Details'),
      h('dl', { class: 'details' },
        h('dt', {}, 'Owner'), h('dd', { text: app.owner }),
        h('dt', {}, 'Visibility'), seenBy,
        h('dt', {}, 'Bundle'), h('dd', { text: `${size(app.bundleSize)}, SHA-256 ${app.bundleSha256}` }),
        h('dt', {}, 'Imported'), h('dd', { text: when(app.createdAt) }))),
    manage]);
  await showAbout(about, app);
  await showVersions(versions, app);
  await showManager(manage, session, app, changed);
}
