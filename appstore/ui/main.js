// The App Store's page: finds who is signed in, draws the header, and shows the screen
// the address names.

import { loadSession, signOut } from './api.js';
import { h, notice } from './dom.js';
import { catalogue, admin } from './catalogue.js';
import { appPage } from './app-page.js';
import { instances } from './instances.js';

function account(session) {
  const box = document.getElementById('account');
  if (session) {
    box.replaceChildren(
      h('span', { class: 'who', title: session.email || '' }, h('span', { class: 'sr' }, 'Signed in as '), session.username),
      h('button', { type: 'button', class: 'secondary', onclick: () => signOut() }, 'Sign out'),
    );
  } else {
    const back = location.pathname + location.search;
    box.replaceChildren(h('a', { class: 'button', href: `/auth/login?returnTo=${encodeURIComponent(back)}` }, 'Sign in'));
  }
  const nav = document.getElementById('nav');
  if (session?.admin) nav.append(h('li', {}, h('a', { href: '/admin' }, 'Admin')));
  for (const a of nav.querySelectorAll('a')) {
    const here = a.getAttribute('href') === location.pathname
      || (a.getAttribute('href') === '/' && location.pathname.startsWith('/apps/'));
    if (here) a.setAttribute('aria-current', 'page');
  }
}

async function start() {
  const session = await loadSession();
  account(session);
  const main = document.getElementById('main');
  const path = location.pathname;
  const app = /^\/apps\/([^/]+)$/.exec(path);
  try {
    if (path === '/') await catalogue(main, session);
    else if (app) await appPage(main, session, decodeURIComponent(app[1]));
    else if (path === '/instances') await instances(main, session);
    else if (path === '/admin') await admin(main, session);
    else main.replaceChildren(notice('error', 'There is no such page.'));
  } catch (e) {
    main.replaceChildren(h('h1', {}, 'App Store'), notice('error', e.message || String(e)));
  }
}

start();
