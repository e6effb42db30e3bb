/* inception-sae site, live box: upload an image to `site serve --live`, see its top SAE features. */
(function () {
  'use strict';
  const SAE = window.SAE;
  let info = null;

  function served() { return location.protocol === 'http:' || location.protocol === 'https:'; }

  function getInfo() {
    if (!served()) return Promise.resolve({ enabled: false });
    if (info) return Promise.resolve(info);
    return fetch('api/live').then((r) => r.json()).then((j) => (info = j)).catch(() => ({ enabled: false }));
  }

  SAE.pages.liveLink = function (el) {
    if (!el) return;
    getInfo().then((i) => { if (i.enabled) el.innerHTML = `<a href="#/live" id="live-open">try your own image (${SAE.esc(i.layer)})</a>`; });
  };

  SAE.pages.live = function () {
    SAE.crumbs([{ text: 'try your own image' }]);
    SAE.app().innerHTML = '<p class="muted">Checking the server…</p>';
    SAE.banner(SAE.siteModel()); // until the server says which model it runs
    getInfo().then((i) => {
      if (i.enabled) SAE.banner({ untrained: i.untrained != null ? i.untrained : String(i.identity).startsWith('random:'), identity: i.identity });
      if (!i.enabled) {
        SAE.app().innerHTML = `<div class="card"><h1>Try your own image</h1><p>This needs the site to be served with
          <code>inception-sae site serve SITE --live --sae SAE_DIR</code>; a static copy cannot run the model.</p></div>`;
        return;
      }
      SAE.app().innerHTML = `<h1>Try your own image</h1><p class="muted">Layer ${SAE.esc(i.layer)} · model <code>${SAE.esc(i.identity)}</code>
        · up to ${Math.round(i.max_bytes / 1048576)} MB, ${SAE.esc(i.types.join(', '))}</p>
        <form class="card live-drop" id="live-form"><input type="file" id="live-file" accept="${SAE.esc(i.types.join(','))}">
        <button type="submit" id="live-go">Find features</button></form><div id="live-out"></div>`;
      document.getElementById('live-form').addEventListener('submit', (e) => { e.preventDefault(); submit(i); });
    });
  };

  function submit(i) {
    const file = document.getElementById('live-file').files[0];
    const out = document.getElementById('live-out');
    if (!file) { out.innerHTML = '<p class="err">Choose an image first.</p>'; return; }
    out.innerHTML = '<p class="muted">Running the model…</p>';
    fetch('api/live', { method: 'POST', headers: { 'Content-Type': file.type || 'application/octet-stream' }, body: file })
      .then((r) => r.json().then((j) => ({ ok: r.ok, j })))
      .then(({ ok, j }) => {
        if (!ok) throw new Error(j.error || 'the server refused the image');
        const labels = SAE.hasLayer(j.layer) ? SAE.load(j.layer + '/index').catch(() => null) : Promise.resolve(null);
        return labels.then((index) => show(j, index, out, file));
      })
      .catch((err) => { out.innerHTML = `<p class="err">${SAE.esc(err.message)}</p>`; });
  }

  function show(j, index, out, file) {
    const tiles = j.features.map((f) => {
      const r = index ? SAE.rowOf(index, f.id) : -1;
      const label = r >= 0 ? index.cols.label[r] : '';
      const link = SAE.hasLayer(j.layer) ? `<a href="#/${SAE.esc(j.layer)}/f/${f.id}">feature ${f.id}</a>` : `feature ${f.id}`;
      return `<div class="tile live-feature"><img src="${f.heatmap}" alt="heatmap of feature ${f.id}">${link}<br>
        <span class="v">max ${SAE.fmt(f.max, 3)}</span> <span class="muted">${SAE.esc(label)}</span></div>`;
    }).join('');
    out.innerHTML = `<div class="card"><h2>Top features of your image</h2><p class="small muted">${j.positions} positions; ranked by max activation. ${SAE.esc(j.note || '')}</p>
      <div class="live-grid"><div class="tile"><img src="${j.image}" alt="your image (as the model sees it)">input</div>${tiles}</div></div>
      <div id="live-explain"></div>`;
    if (SAE.explainView) SAE.explainView(file, document.getElementById('live-explain'), j.layer);
  }

  SAE.liveInfo = getInfo;
})();
