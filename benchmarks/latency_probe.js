// benchmarks.browser's probe, added to every page before Streamlit's own scripts run.
// It times, in the page's own clock, from a key or pointer press (or from navigation, for the
// first render) to the first animation frame where the app is idle (script state
// "notRunning", no status widget) or, if later, the last element added or text changed, or
// the last change to a chart's drawing (Vega draws after the run, and on a first visit
// Streamlit loads the chart's code first: a second or more after the run is over). Meanwhile it counts
// the websocket messages the server sent (one per element or delta) and the Vega charts
// whose drawing changed.
(() => {
  const APP = '[data-testid="stApp"]', STATUS = '[data-testid="stStatusWidget"]';
  const CHART = '[data-testid="stVegaLiteChart"]', QUIET_MS = 50, STILL_MS = 500;
  const L = window.__latency = {
    actionAt: 0, busy: false, runs: 0, idleAt: null, chartAt: 0, domAt: 0, candidate: null, messageAt: 0,
    messages: 0, bytes: 0, charts: new Set(),
  };
  for (const type of ['pointerdown', 'keydown']) {
    addEventListener(type, () => { if (L.actionAt === null) L.actionAt = performance.now(); }, true);
  }
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', e => {
        L.messages += 1; L.busy = true; L.candidate = null; L.messageAt = performance.now();
        L.bytes += e.data.byteLength ?? e.data.size ?? e.data.length ?? 0;
      });
    }
  };
  new MutationObserver(records => {
    for (const r of records) {
      if (r.attributeName === 'data-test-script-state') {
        // seen here, not in a frame: a rerun can start and end between two frames
        if (r.target.getAttribute(r.attributeName) !== 'notRunning') L.busy = true;
        continue;
      }
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const chart = node && node.closest(CHART);
      if (chart) { L.charts.add(chart); L.chartAt = performance.now(); }
      // Elements appearing or text changing: Streamlit mounts some elements (charts among
      // them) only after loading their code, a second after the run is over.
      else if (r.type !== 'attributes' && !(node && node.closest(STATUS))) L.domAt = performance.now();
    }
  }).observe(document, {childList: true, subtree: true, attributes: true, characterData: true});
  let app = null;
  const idle = () => {
    if (!app || !app.isConnected) app = document.querySelector(APP);
    return app?.getAttribute('data-test-script-state') === 'notRunning' && !document.querySelector(STATUS);
  };
  const tick = () => {
    // A run is over at the first idle frame after its last message, once QUIET_MS have
    // passed with no message (a fast rerun can start and end between two frames, and the
    // script state may never be drawn as running).
    const now = performance.now();
    if (!idle()) L.candidate = null;
    else if (L.candidate === null) L.candidate = now;
    if (L.busy && L.candidate !== null && now - Math.max(L.candidate, L.messageAt) >= QUIET_MS) {
      L.busy = false; L.runs += 1; L.idleAt = L.candidate;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const result = start => ({
    ms: Math.max(L.idleAt, L.chartAt, L.domAt) - start, messages: L.messages, bytes: L.bytes, charts: L.charts.size,
  });
  Object.assign(L, {
    arm() { L.actionAt = null; L.messages = 0; L.bytes = 0; L.charts = new Set(); return L.runs; },
    idleAfter(runs) { return L.runs > runs && !L.busy; },
    // every chart on the page drawn (Vega's marks are in), and nothing changed for STILL_MS
    still() {
      const charts = [...document.querySelectorAll(CHART)];
      return charts.every(c => c.querySelector('.marks'))
        && performance.now() - Math.max(L.chartAt, L.domAt) >= STILL_MS;
    },
    last() { return result(L.actionAt); },
    cold() { return result(0); },
  });
})();
