/* inception-sae site, core: data loading by <script> tags (works from file://), hash router, helpers.
   Data files call SAE.receive(key, data); pages are drawn from them. No framework, no network. */
(function () {
  'use strict';
  const SAE = (window.SAE = window.SAE || {});
  const cache = {};
  const waiting = {};
  SAE.pages = {};

  SAE.receive = function (key, data) {
    cache[key] = data;
    (waiting[key] || []).forEach((w) => w.res(data));
    delete waiting[key];
  };

  /* Load data/<key>.js once; resolves with its data. */
  SAE.load = function (key) {
    if (key in cache) return Promise.resolve(cache[key]);
    return new Promise((res, rej) => {
      const first = !waiting[key];
      (waiting[key] = waiting[key] || []).push({ res, rej });
      if (!first) return;
      const s = document.createElement('script');
      s.src = 'data/' + key + '.js';
      s.onload = () => s.remove();
      s.onerror = () => {
        const w = waiting[key] || [];
        delete waiting[key];
        s.remove();
        w.forEach((x) => x.rej(new Error('no data file data/' + key + '.js')));
      };
      document.head.appendChild(s);
    });
  };
  SAE.cached = (key) => cache[key];
  /* The last two parts of a path (e.g. mixed4a/sae): where the SAE is, without the builder's absolute path. */
  SAE.shortPath = (p) => String(p).split(/[\\/]/).filter(Boolean).slice(-2).join('/');

  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  SAE.esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g, (c) => ESC[c]);
  /* Numbers as people read them; the same rule as inception_sae.display (Python), which a test keeps equal.
     SAE.fmt(x, sig): ``sig`` significant digits (default 3), not fixed decimals; scientific (3.5e-4, 1.2e+5)
     when the rounded magnitude is below 1e-3 or from 1e5 on; a nonzero value never prints as 0. Halves round
     away from zero (toPrecision / toFixed; Python's Decimal ROUND_HALF_UP on the exact value). */
  const strip = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  SAE.fmt = function (x, sig) {
    if (x == null || Number.isNaN(x)) return '–';
    if (!Number.isFinite(x)) return x > 0 ? '∞' : '-∞';
    if (x === 0) return '0';
    const n = sig == null ? 3 : sig;
    const [m, ex] = x.toExponential(n - 1).split('e'); // rounded to n digits: m × 10^ex
    const e = +ex;
    if (e < -3 || e >= 5) return strip(m) + 'e' + (e < 0 ? '-' : '+') + Math.abs(e);
    return strip(x.toFixed(Math.max(0, n - 1 - e)));
  };
  /* Significance lines a p- or q-value is never rounded across (or onto). */
  SAE.P_LINES = [0.01, 0.05];
  const crosses = (p, v, lines) => lines.some((t) => (p > t) !== (v > t) || (p < t) !== (v < t));
  /* p- and q-values: two significant digits, more where fewer would cross a line of SAE.P_LINES; below 1e-300
     (an underflowed p, 0 included): '< 1e-300'. */
  SAE.pval = function (p, sig, lines) {
    if (p == null || Number.isNaN(p)) return '–';
    if (p < 1e-300) return '< 1e-300';
    let n = sig == null ? 2 : sig, text = SAE.fmt(p, n);
    while (n < 17 && crosses(p, Number(text), lines || SAE.P_LINES)) text = SAE.fmt(p, ++n);
    return text;
  };
  /* A fraction as a percentage with ``d`` decimals (default 1; 2 under 1%); a nonzero one never shows 0%. */
  SAE.pct = function (x, d, signed) {
    if (x == null || Number.isNaN(x)) return '–';
    const v = 100 * x;
    let text = v.toFixed(d != null ? d : x > 0 && x < 0.01 ? 2 : 1);
    if (v !== 0 && Number(text) === 0) text = SAE.fmt(v, 2);
    return (signed && v > 0 ? '+' : '') + text + '%';
  };
  /* An interval [lo, hi) with as many digits as it takes for its two ends to differ. */
  SAE.range = function (lo, hi, sig) {
    let n = sig == null ? 2 : sig, a = SAE.fmt(lo, n), b = SAE.fmt(hi, n);
    while (n < 17 && lo !== hi && a === b) { n += 1; a = SAE.fmt(lo, n); b = SAE.fmt(hi, n); }
    return [a, b];
  };
  /* Colours of sign: a positive weight or term (excites, pushes up) and a negative one (inhibits, pushes down);
     inception_sae.display POSITIVE_COLOUR / NEGATIVE_COLOUR in Python, the circuits figure and explain. */
  SAE.SIGN = { positive: '#2764c4', negative: '#b3261e' };
  /* The legend of the sign colours, worded for the page (e.g. 'excites', 'inhibits'). */
  SAE.signLegend = (pos, neg) => `<p class="small muted sign-legend"><span class="pos">■ blue</span>: ${SAE.esc(pos)};
    <span class="neg">■ red</span>: ${SAE.esc(neg)}.</p>`;
  document.documentElement.style.setProperty('--positive', SAE.SIGN.positive);
  document.documentElement.style.setProperty('--negative', SAE.SIGN.negative);
  SAE.palette = ['#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d', '#666'];
  SAE.branchColour = function (index, branch) {
    const fixed = (index.branch_colours || {})[branch]; // the analysis PNGs' colours
    if (fixed) return fixed;
    const i = index.branches.indexOf(branch);
    return i < 0 ? '#999' : SAE.palette[i % SAE.palette.length];
  };
  SAE.chip = (index, b) =>
    b ? `<span class="bchip" style="background:${SAE.branchColour(index, b)}">${SAE.esc(b)}</span>` : '';
  /* A picture: a file, a data URI, or a thumbnail tile "sprite:<sheet>#<col>,<row>,<cols>,<rows>" (drawn as
     the sheet's tile behind a transparent pixel, so the img rules of each view size it as any picture). */
  const BLANK = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';
  SAE.img = function (src, cls, alt) {
    if (!src) return '';
    const m = /^sprite:([^#]+)#(\d+),(\d+),(\d+),(\d+)$/.exec(src);
    if (!m) return `<img src="${SAE.esc(src)}" class="${cls || ''}" alt="${SAE.esc(alt || '')}">`;
    const [col, row, cols, rows] = m.slice(2).map(Number);
    const pos = (i, n) => (n > 1 ? (100 * i) / (n - 1) : 0);
    const style = `background:url('${SAE.esc(m[1])}') ${pos(col, cols)}% ${pos(row, rows)}% / ${cols * 100}% ${rows * 100}% no-repeat`;
    return `<img src="${BLANK}" class="${cls || ''} sprite" alt="${SAE.esc(alt || '')}" style="${style}">`;
  };
  SAE.app = () => document.getElementById('app');
  SAE.site = () => cache.site;
  SAE.hasLayer = (layer) => !!(cache.site && cache.site.layers.some((l) => l.layer === layer));

  /* Node id ("mixed4c/f/12", "class/3") -> link (or plain text when the site lacks that layer). */
  SAE.nodeLink = function (node, label) {
    const parts = String(node).split('/');
    const text = SAE.esc(label || node);
    if (parts[0] === 'class') return `<a href="#/class/${encodeURIComponent(parts[1])}">${text}</a>`;
    if (SAE.hasLayer(parts[0])) return `<a href="#/${parts.map(encodeURIComponent).join('/')}">${text}</a>`;
    return `<span title="layer not on this site">${text}</span>`;
  };

  function crumbs(parts) {
    const nav = document.getElementById('crumbs');
    let html = '';
    parts.forEach((p, i) => {
      if (i) html += '<span class="sep">›</span>';
      html += p.href ? `<a href="${p.href}">${SAE.esc(p.text)}</a>` : SAE.esc(p.text);
    });
    nav.innerHTML = html;
  }
  SAE.crumbs = crumbs;

  /* The red UNTRAINED banner, shown on every page whose data come from a random network: ``m`` is anything with
     ``untrained`` and ``identity`` (a layer's index, a comparison, the live server's info). */
  SAE.banner = function (m) {
    const el = document.getElementById('banner');
    el.textContent = m && m.untrained
      ? `UNTRAINED WEIGHTS (${m.identity}): these features describe a randomly initialised network, not the trained InceptionV1.`
      : '';
  };
  /* The site's model for pages that span layers: its first untrained layer, if any. */
  SAE.siteModel = () => ((cache.site && cache.site.layers) || []).find((l) => l.untrained) || null;

  SAE.fail = function (err) {
    SAE.app().innerHTML = `<div class="card"><p class="err">${SAE.esc(err && err.message ? err.message : err)}</p>
      <p><a href="#/">Back to the start page</a></p></div>`;
  };

  function home(site) {
    crumbs([]);
    if (site.layers.length === 1) {
      location.replace('#/' + site.layers[0].layer);
      return;
    }
    SAE.banner(SAE.siteModel());
    const cards = site.layers
      .map((l) => `<a class="card" href="#/${SAE.esc(l.layer)}"><h2>${SAE.esc(l.layer)}</h2>
        <div class="muted">${l.features} features · ${l.neurons} neurons${l.untrained ? ' · <b class="err">untrained weights</b>' : ''}</div></a>`)
      .join('');
    SAE.app().innerHTML = `<h1>${SAE.esc(site.title)}</h1><p class="muted">Built ${SAE.esc(site.built)};
      ${site.circuit_edges} circuit edges; ${site.featvis} visualisations.</p><div class="layers">${cards}</div>
      ${site.concepts ? `<p id="concepts-link"><a href="#/concepts">Concepts across layers</a> <span class="muted">(${site.concepts} WordNet nodes with labelled features)</span></p>` : ''}
      <p id="live-link"></p><p id="compare-links"></p>`;
    if (SAE.pages.liveLink) SAE.pages.liveLink(document.getElementById('live-link'));
    if (SAE.pages.compareLinks) SAE.pages.compareLinks(document.getElementById('compare-links'));
  }

  function firstClassLayer(site) {
    const withClasses = site.layers.filter((l) => l.classes);
    const pref = withClasses.find((l) => l.layer === 'mixed5b') || withClasses[0];
    return pref && pref.layer;
  }

  /* Mark the page drawn by promise ``p`` as ready (for the tests), or show its error. */
  function settle(p) {
    const app = SAE.app(), hash = location.hash;
    delete app.dataset.ready;
    p.then(() => { if (location.hash === hash) app.dataset.ready = hash; }).catch(SAE.fail);
  }

  /* #/ , #/<layer>, #/<layer>/f/<id>, #/<layer>/n/<id>, #/<layer>/classes, #/<layer>/class/<i>, #/class/<i>, #/live,
     #/compare/<k>, #/concepts, #/concept/<wnid> */
  function route() {
    const site = cache.site;
    if (!site) return SAE.fail('data/site.js is missing: rebuild the site with `inception-sae site build`.');
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    window.scrollTo(0, 0);
    SAE.banner(SAE.siteModel()); // each page narrows it to its own data (a layer, a comparison, the live model)
    if (!parts.length) return home(site);
    if (parts[0] === 'live') return SAE.pages.live();
    if (parts[0] === 'compare') return SAE.pages.compare(+parts[1]).catch(SAE.fail);
    if (parts[0] === 'concepts') return settle(SAE.pages.concepts());
    if (parts[0] === 'concept') return settle(SAE.pages.concept(parts[1] || ''));
    if (parts[0] === 'class') {
      const layer = firstClassLayer(site);
      return layer ? location.replace(`#/${layer}/class/${parts[1]}`) : SAE.fail('no layer on this site has class data');
    }
    const layer = parts[0];
    if (!SAE.hasLayer(layer)) return SAE.fail(`layer ${layer} is not on this site`);
    settle(SAE.load(layer + '/index').then((index) => {
      SAE.banner(index);
      if (parts.length === 1) return SAE.pages.layer(index);
      if (parts[1] === 'f') return SAE.pages.feature(index, +parts[2]);
      if (parts[1] === 'n') return SAE.pages.neuron(index, +parts[2]);
      if (parts[1] === 'classes') return SAE.pages.classes(index);
      if (parts[1] === 'class') return SAE.pages.klass(index, +parts[2]);
      throw new Error('unknown page ' + location.hash);
    }));
  }
  SAE.route = route;

  SAE.start = function () {
    window.addEventListener('hashchange', route);
    document.getElementById('jump').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = document.getElementById('jump-id').value.trim();
      const site = cache.site;
      if (!site || !v) return;
      const cur = location.hash.replace(/^#\/?/, '').split('/')[0];
      const layer = SAE.hasLayer(cur) ? cur : site.layers[0].layer;
      if (/^\d+$/.test(v)) location.hash = `#/${layer}/f/${v}`;
      else if (SAE.hasLayer(v)) location.hash = '#/' + v;
      else SAE.searchLayer(layer, v); // labels: the layer's feature table, filtered
    });
    route();
  };
})();
