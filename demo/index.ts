// The demo index: links to every page.
import { PAGES, h, pageHeader, $ } from './lib.js';

pageHeader('index.html');
$('pages').replaceChildren(...PAGES.map((p) => h('div', {}, h('a', { href: p.file, textContent: p.title }), h('span', { className: 'muted', textContent: ` — ${p.text}` }))));
