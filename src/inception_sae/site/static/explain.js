/* inception-sae site, live box: "why this class?" — the image's top classes split into SAE-feature terms. */
(function () {
  'use strict';
  const SAE = window.SAE;

  SAE.explainView = function (file, el, layer) {
    el.innerHTML = `<div class="card"><h2>Why these classes?</h2>
      <p class="small muted">Splits each class logit into one term per SAE feature, the SAE's reconstruction error and the biases.</p>
      <form id="explain-form">class indices (optional, e.g. 208,209): <input id="explain-class" size="12">
      <button type="submit" id="explain-go">Explain the prediction</button></form><div id="explain-out"></div></div>`;
    el.querySelector('#explain-form').addEventListener('submit', (e) => { e.preventDefault(); run(file, layer); });
  };

  function run(file, layer) {
    const out = document.getElementById('explain-out');
    const cls = document.getElementById('explain-class').value.replace(/\s+/g, '');
    out.innerHTML = '<p class="muted">Splitting the logits…</p>';
    const url = 'api/explain' + (cls ? '?class=' + encodeURIComponent(cls) : '');
    const labels = SAE.hasLayer(layer) ? SAE.load(layer + '/index').catch(() => null) : Promise.resolve(null);
    fetch(url, { method: 'POST', headers: { 'Content-Type': file.type || 'application/octet-stream' }, body: file })
      .then((r) => r.json().then((j) => ({ ok: r.ok, j })))
      .then(({ ok, j }) => {
        if (!ok) throw new Error(j.error || 'the server refused the image');
        return labels.then((index) => { out.innerHTML = render(j, index); });
      })
      .catch((err) => { out.innerHTML = `<p class="err">${SAE.esc(err.message)}</p>`; });
  }

  const share = (v, t) => (t ? SAE.pct(v / t) : '–');

  function tile(f, j, index, target) {
    const r = index ? SAE.rowOf(index, f.id) : -1;
    const label = f.label || (r >= 0 ? index.cols.label[r] : '');
    const name = SAE.hasLayer(j.layer) ? `<a href="${SAE.esc(f.link)}">feature ${f.id}</a>` : `feature ${f.id}`;
    return `<div class="tile explain-feature">${SAE.img(f.heatmap, '', 'feature ' + f.id + ' on the image')}${name}
      <span class="${f.term > 0 ? 'pos' : 'neg'}">${f.term > 0 ? '+' : ''}${SAE.fmt(f.term, 4)}</span> (${share(f.term, target)})<br>
      <span class="small muted">mean act ${SAE.fmt(f.mean_act, 3)} ${SAE.esc(label)}</span></div>`;
  }

  function render(j, index) {
    const head = `<p class="${j.exact ? 'small muted' : 'err'}" id="explain-method">${SAE.esc(j.method)}</p>
      <p class="small muted">SAE reconstruction error on this image: FVU ${SAE.fmt(j.fvu, 3)} · model <code>${SAE.esc(j.identity)}</code></p>`;
    return head + j.classes.map((c) => {
      const p = c.parts;
      const rows = [['all SAE features', p.features], ['SAE reconstruction error', p.error],
        ['SAE decoder bias', p.decoder_bias], ['classifier bias', p.bias]]
        .map(([n, v]) => `<tr><td class="l">${n}</td><td>${SAE.fmt(v, 4)}</td><td>${share(v, c.target)}</td></tr>`).join('');
      const side = (list, title) => `<h3>${title}</h3>` + (list.length
        ? `<div class="live-grid">${list.map((f) => tile(f, j, index, c.target)).join('')}</div>` : '<p class="muted">none</p>');
      return `<div class="explain-class" data-class="${c.index}"><h2>${SAE.esc(c.name)} <span class="muted">(class ${c.index}, p = ${SAE.fmt(c.prob, 3)})</span></h2>
        <table class="explain-parts"><tr><th class="l">part</th><th>value</th><th>share of the ${SAE.esc(c.target_kind)}</th></tr>
        <tr><td class="l"><b>${SAE.esc(c.target_kind)}</b></td><td class="explain-target"><b>${SAE.fmt(c.target, 4)}</b></td><td>100%</td></tr>${rows}
        <tr><td class="l">sum of parts${j.exact ? '' : ' (IG total)'}</td><td class="explain-total">${SAE.fmt(c.total, 4)}</td>
        <td>difference ${SAE.fmt(c.residual, 2)}</td></tr></table>
        ${SAE.signLegend('pushes the class up (positive term)', 'pushes it down (negative term)')}
        ${side(c.up, 'features pushing it up')}${side(c.down, 'features pushing it down')}</div>`;
    }).join('');
  }
})();
