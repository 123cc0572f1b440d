/* The Pipelines tab's flow canvas: Drawflow draws a VisualPipeline that Python owns.
 *
 * Python sends a whole view as the component's value (ui/flow_canvas.py: canvas_view); the canvas sends each edit
 * back with send({op: ...}), one at a time, and draws the view that answers it. Drawflow moves nodes and drags
 * wires itself, so what it shows runs ahead of the answer; when the answer differs (an edit refused in Python) the
 * canvas is redrawn from it. Wires between types the builder refuses are refused here before they are sent, by
 * each input's `accepts` list (the builder's rule, carried by the palette). */
(function () {
  "use strict";
  if (window.SageFlow) return;
  const NODE_W = 170;
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };
  const wireKey = (w) => `${w.source}>${w.target}.${w.port}`;

  class FlowCanvas {
    constructor(root, send) {
      this.root = root;
      this.frame = root.querySelector(".sage-flow");
      this.post = send;
      this.area = root.querySelector(".sage-flow-area");
      this.view = {nodes: [], wires: [], runs: {}, issues: {nodes: {}, wires: []}, text: {}};
      this.queue = [];
      this.inflight = null; // the timer that gives up waiting for an answer
      this.deferred = false; // an answer came during a drag: drawn when it ends
      this.selection = null; // {node} or {wire}
      this.dfOf = {}; // node id -> Drawflow id, and back
      this.idOf = {};
      const editor = (this.editor = new Drawflow(this.area));
      Object.assign(editor, {zoom_min: 0.3, zoom_max: 1.6, curvature: 0.4, line_path: 3});
      editor.start();
      this.listen();
    }

    node(id) { return this.view.nodes.find((n) => n.id === id); }

    // -- from Drawflow: what the user did --------------------------------------------------------------------
    listen() {
      const ed = this.editor;
      ed.on("nodeSelected", (df) => { this.selection = {node: this.idOf[df]}; this.send({op: "select", id: this.idOf[df]}); });
      ed.on("nodeUnselected", () => {
        this.selection = null;
        this.area.querySelectorAll(".sage-selected").forEach((e) => e.classList.remove("sage-selected"));
      });
      ed.on("connectionSelected", (c) => { this.selection = {wire: this.wireOf(c)}; });
      ed.on("connectionUnselected", () => { this.selection = null; });
      ed.on("nodeMoved", (df) => {
        // Drawflow's data runs one mouse step ahead of where it drew the node: what the user sees counts.
        const d = ed.drawflow.drawflow.Home.data[df], el = this.area.querySelector(`#node-${df}`);
        [d.pos_x, d.pos_y] = [parseFloat(el.style.left), parseFloat(el.style.top)];
        this.send({op: "move", id: this.idOf[df], x: Math.round(d.pos_x), y: Math.round(d.pos_y)});
      });
      ed.on("connectionStart", (c) => this.markPorts(this.node(this.idOf[c.output_id])));
      ed.on("connectionCancel", () => this.markPorts(null));
      ed.on("connectionCreated", (c) => this.connected(c));
      // Zoomed far out, a node shows only its title, in big type: the picture stays readable.
      ed.on("zoom", (zoom) => this.area.classList.toggle("sage-far", zoom < 0.6));
      this.root.addEventListener("keydown", (e) => this.key(e), true);
      // Drawflow cancels some mousedowns, which keeps the focus where it was: take it, so Delete reaches us.
      this.area.addEventListener("mousedown", () => this.area.focus({preventScroll: true}), true);
      // No right-click menu: Drawflow's would delete behind Python's back.
      this.area.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); }, true);
      this.area.addEventListener("wheel", (e) => {
        if (e.ctrlKey) return; // Drawflow zooms on ctrl+wheel itself
        e.preventDefault();
        e.deltaY > 0 ? ed.zoom_out() : ed.zoom_in();
      }, {passive: false});
      // Drawflow hears mouseups on its own area only: one outside would leave a wire or a node stuck to the mouse.
      document.addEventListener("mouseup", (e) => {
        if (!this.area.contains(e.target) && (ed.connection || ed.drag || ed.editor_selected)) ed.dragEnd(e);
        setTimeout(() => this.drawDeferred(), 0);
      });
      this.root.querySelectorAll("[data-act]").forEach((b) => b.addEventListener("click", () => this.act(b.dataset.act)));
      new ResizeObserver(() => { if (this.wantFit && this.area.clientWidth) this.fit(); }).observe(this.area);
    }

    wireOf(c) {
      const target = this.node(this.idOf[c.input_id]);
      const port = target && target.inputs[parseInt(c.input_class.slice(6), 10) - 1];
      return {source: this.idOf[c.output_id], target: target && target.id, port: port && port.name};
    }

    connected(c) {
      this.markPorts(null);
      const wire = this.wireOf(c);
      const why = this.refusal(wire);
      if (!why) {
        this.tagWires();
        this.send({op: "connect", ...wire});
        return;
      }
      this.editor.removeSingleConnection(c.output_id, c.input_id, c.output_class, c.input_class);
      const input = this.area.querySelector(`#node-${c.input_id} .input.${c.input_class}`);
      [input, input && input.closest(".drawflow-node")].forEach((e) => e && e.classList.add("sage-refused"));
      setTimeout(() => this.area.querySelectorAll(".sage-refused").forEach((e) => e.classList.remove("sage-refused")), 1600);
      this.toast(why);
    }

    /** Why `wire` may not be made (the sentence to show), or "" when it may. */
    refusal(wire) {
      const text = this.view.text;
      const source = this.node(wire.source), target = this.node(wire.target);
      const port = target && target.inputs.find((p) => p.name === wire.port);
      if (!source || !port) return "";
      if (source.id === target.id) return text.self_loop;
      if (port.accepts && !port.accepts.includes(source.output)) {
        return fill(text.incompatible, {source: source.id, produced: source.output, port: port.name,
                                        target: target.id, expected: port.type});
      }
      const taken = !port.multiple && this.view.wires.find((w) => w.target === target.id && w.port === port.name);
      return taken ? fill(text.port_taken, {port: port.name, target: target.id, source: taken.source}) : "";
    }

    /** While a wire is dragged from `source`, inputs that would take it glow and the others fade. */
    markPorts(source) {
      this.area.querySelectorAll(".input[data-port]").forEach((e) => {
        e.classList.remove("sage-can", "sage-cannot");
        if (!source) return;
        const ok = !this.refusal({source: source.id, target: e.dataset.node, port: e.dataset.port});
        e.classList.add(ok ? "sage-can" : "sage-cannot");
      });
    }

    key(e) {
      if (/^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
      const mod = e.ctrlKey || e.metaKey, k = e.key.toLowerCase();
      const op = e.key === "Delete" || e.key === "Backspace" ? "delete"
        : mod && k === "z" ? (e.shiftKey ? "redo" : "undo") : mod && k === "y" ? "redo" : null;
      if (!op) return;
      e.preventDefault();
      e.stopPropagation(); // Drawflow would delete on its own, behind Python's back
      op === "delete" ? this.act("delete") : this.send({op});
    }

    act(name) {
      const ed = this.editor;
      if (name === "zoom-in") ed.zoom_in();
      else if (name === "zoom-out") ed.zoom_out();
      else if (name === "fit") this.fit();
      else if (name === "layout") this.send({op: "layout"});
      else if (name === "delete" && this.selection) {
        const s = this.selection;
        this.selection = null;
        this.send(s.node ? {op: "remove", id: s.node} : {op: "disconnect", ...s.wire});
      }
    }

    /** A palette drop at a point of the page: a node of `type` there, or false when the point is off the canvas. */
    drop(type, clientX, clientY) {
      const box = this.area.getBoundingClientRect();
      if (clientX < box.left || clientX > box.right || clientY < box.top || clientY > box.bottom) return false;
      const origin = this.editor.precanvas.getBoundingClientRect(), zoom = this.editor.zoom;
      this.send({op: "add", type, x: Math.round((clientX - origin.left) / zoom - NODE_W / 2),
                 y: Math.round((clientY - origin.top) / zoom - 20)});
      return true;
    }

    /** A palette click: a node of `type` in the middle of what the canvas shows, a little off the last one. */
    addInView(type) {
      const box = this.area.getBoundingClientRect(), step = 24 * (this.view.nodes.length % 6);
      this.drop(type, box.left + box.width / 2 + step, box.top + box.height / 3 + step);
    }

    // -- to and from Python: one edit in flight, answered by a whole view ------------------------------------
    send(edit) {
      this.queue.push(edit);
      this.pump();
    }

    pump() {
      if (this.inflight || !this.queue.length) return;
      this.frame.dataset.pending = "1";
      // An edit Python failed on gets no answer: stop waiting for it after a while.
      this.inflight = setTimeout(() => { this.inflight = null; this.pump(); }, 30000);
      this.post(this.queue.shift());
    }

    receive(view) {
      clearTimeout(this.inflight);
      this.inflight = null;
      this.latest = view;
      if (this.queue.length) return this.pump(); // a newer answer is on its way
      const ed = this.editor;
      if (ed.drag || ed.connection || ed.editor_selected) { this.deferred = true; return; }
      this.draw(view);
    }

    drawDeferred() {
      if (this.deferred && !this.inflight && !this.queue.length) { this.deferred = false; this.draw(this.latest); }
    }

    // -- drawing ---------------------------------------------------------------------------------------------
    draw(view) {
      this.view = view;
      // Python's selection (a dropped node, a node picked in the list) is what Delete removes, unless a wire is.
      if (view.selected && !(this.selection && this.selection.wire)) this.selection = {node: view.selected};
      const shown = this.drawnSignature(), wanted = this.signature(view);
      if (shown !== wanted) this.rebuild(view);
      this.decorate(view);
      this.frame.dataset.pending = "0";
      if (view.fit) this.fit();
    }

    signature(view) {
      const nodes = view.nodes.map((n) => [n.id, n.label, n.type, Math.round(n.x), Math.round(n.y)].join("|"));
      return JSON.stringify([nodes.sort(), view.wires.map(wireKey).sort()]);
    }

    /** The signature of what Drawflow shows now (nodes where they were dragged, wires as drawn). */
    drawnSignature() {
      const data = this.editor.drawflow.drawflow.Home.data, nodes = [], wires = [];
      Object.values(data).forEach((d) => {
        nodes.push([d.data.id, d.data.label, d.data.type, Math.round(d.pos_x), Math.round(d.pos_y)].join("|"));
        (d.outputs.output_1 || {connections: []}).connections.forEach((c) => {
          const target = data[c.node].data, port = target.ports[parseInt(c.output.slice(6), 10) - 1];
          wires.push(wireKey({source: d.data.id, target: target.id, port}));
        });
      });
      return JSON.stringify([nodes.sort(), wires.sort()]);
    }

    rebuild(view) {
      const data = {};
      this.dfOf = {};
      this.idOf = {};
      view.nodes.forEach((n, i) => {
        const df = String(i + 1);
        this.dfOf[n.id] = df;
        this.idOf[df] = n.id;
        const inputs = {};
        n.inputs.forEach((p, k) => { inputs[`input_${k + 1}`] = {connections: []}; });
        data[df] = {id: i + 1, name: n.type, class: `sage-node sage-cat-${n.category}`, html: "", typenode: false,
                    data: {id: n.id, label: n.label, type: n.type, ports: n.inputs.map((p) => p.name)},
                    inputs, outputs: {output_1: {connections: []}}, pos_x: n.x, pos_y: n.y};
      });
      view.wires.forEach((w) => {
        const s = this.dfOf[w.source], t = this.dfOf[w.target];
        const k = t ? this.node(w.target).inputs.findIndex((p) => p.name === w.port) + 1 : 0;
        if (!s || !k) return;
        data[s].outputs.output_1.connections.push({node: t, output: `input_${k}`});
        data[t].inputs[`input_${k}`].connections.push({node: s, input: "output_1"});
      });
      this.editor.node_selected = this.editor.connection_selected = null;
      this.editor.import({drawflow: {Home: {data}}});
      view.nodes.forEach((n) => this.fillNode(n));
      // Wires were laid out before the nodes got their content: lay them out again on the final boxes.
      Object.keys(data).forEach((df) => this.editor.updateConnectionNodes(`node-${df}`));
    }

    fillNode(n) {
      const el = this.area.querySelector(`#node-${this.dfOf[n.id]}`);
      el.dataset.node = n.id;
      const content = el.querySelector(".drawflow_content_node");
      const head = make("div", "sage-node-head");
      head.append(make("span", "sage-node-title", n.label), make("span", "sage-node-badge"));
      content.append(head, make("div", "sage-node-sub", `${n.operator} → ${n.output}`));
      n.inputs.forEach((p) => content.append(make("div", "sage-node-port", p.name)));
      content.append(make("div", "sage-node-preview"), make("div", "sage-node-issue"));
      el.querySelectorAll(".input").forEach((e, k) => {
        const p = n.inputs[k];
        Object.assign(e.dataset, {node: n.id, port: p.name});
        e.title = `${p.name}: ${p.type}${p.required ? ", required" : ""}${p.multiple ? ", several" : ""}`;
        e.classList.add(`sage-t-${p.type}`);
      });
      const out = el.querySelector(".output");
      out.title = `output: ${n.output}`;
      out.classList.add(`sage-t-${n.output}`);
    }

    /** Run results, validation problems and the selection: drawn on what is there, without a rebuild. */
    decorate(view) {
      this.tagWires();
      const bad = new Set((view.issues.wires || []).map(wireKey));
      this.area.querySelectorAll("svg.connection").forEach((svg) => svg.classList.toggle("sage-wire-invalid", bad.has(svg.dataset.wire)));
      view.nodes.forEach((n) => {
        const el = this.area.querySelector(`#node-${this.dfOf[n.id]}`);
        if (!el) return;
        const run = view.runs[n.id], problems = view.issues.nodes[n.id] || [];
        el.classList.toggle("sage-selected", view.selected === n.id);
        ["ok", "error", "skipped"].forEach((s) => el.classList.toggle(`sage-run-${s}`, !!run && run.status === s));
        el.classList.toggle("sage-invalid", problems.length > 0);
        el.querySelector(".sage-node-badge").textContent = run ? `${run.status} · ${run.ms} ms` : "";
        el.querySelector(".sage-node-preview").textContent = run ? run.preview : "";
        el.querySelector(".sage-node-issue").textContent = problems.join(" ");
      });
      this.root.querySelector(".sage-flow-empty").hidden = view.nodes.length > 0;
      const other = (view.issues.other || []).join(" ");
      if (other) this.toast(other);
    }

    /** Name each drawn wire (class sage-edge, data-wire) and colour it by the type it carries. */
    tagWires() {
      this.area.querySelectorAll("svg.connection").forEach((svg) => {
        const cls = Array.from(svg.classList);
        const dfIn = (cls.find((c) => c.startsWith("node_in_node-")) || "").slice(13);
        const dfOut = (cls.find((c) => c.startsWith("node_out_node-")) || "").slice(14);
        const input = cls.find((c) => /^input_\d+$/.test(c));
        if (!dfIn || !dfOut || !input) return;
        const wire = this.wireOf({output_id: dfOut, input_id: dfIn, input_class: input});
        const source = this.node(wire.source);
        svg.classList.add("sage-edge", `sage-t-${source ? source.output : "any"}`);
        svg.dataset.wire = wireKey(wire);
      });
    }

    /** Zoom and pan so every node shows (Drawflow scales about the middle of the drawing area). */
    fit() {
      const data = Object.entries(this.editor.drawflow.drawflow.Home.data);
      const W = this.area.clientWidth, H = this.area.clientHeight;
      this.wantFit = !W; // hidden (another tab is open): fit when it shows
      if (!W || !data.length) return;
      const xs = [], ys = [];
      data.forEach(([df, d]) => {
        const e = this.area.querySelector(`#node-${df}`);
        xs.push(d.pos_x, d.pos_x + e.offsetWidth);
        ys.push(d.pos_y, d.pos_y + e.offsetHeight);
      });
      const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
      const ed = this.editor, pad = 32;
      const zoom = Math.max(ed.zoom_min, Math.min(1, (W - 2 * pad) / (x1 - x0), (H - 2 * pad) / (y1 - y0)));
      ed.zoom = ed.zoom_last_value = zoom;
      ed.canvas_x = zoom * (W / 2 - (x0 + x1) / 2);
      ed.canvas_y = zoom * (H / 2 - (y0 + y1) / 2);
      ed.precanvas.style.transform = `translate(${ed.canvas_x}px, ${ed.canvas_y}px) scale(${zoom})`;
      this.area.classList.toggle("sage-far", zoom < 0.6);
    }

    toast(message) {
      const t = this.root.querySelector(".sage-flow-toast");
      t.textContent = message;
      t.hidden = false;
      clearTimeout(this.toastTimer);
      this.toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
    }
  }

  /** The palette: operators by category; drag one onto the canvas, or click (or Enter) to add it in view. */
  function mountPalette(element, props, watch) {
    const list = element.querySelector(".sage-palette-list"), filter = element.querySelector(".sage-palette-filter");
    const render = () => {
      list.replaceChildren();
      let category = null;
      JSON.parse(props.value || "[]").forEach((op) => {
        if (op.category !== category) list.append(make("div", "sage-palette-cat", (category = op.category)));
        const chip = make("button", `sage-chip sage-cat-${op.category}`, op.label);
        Object.assign(chip, {type: "button", title: op.description});
        Object.assign(chip.dataset, {type: op.type, category: op.category});
        chip.dataset.search = `${op.label} ${op.type} ${op.category} ${op.description}`.toLowerCase();
        list.append(chip);
      });
      applyFilter();
    };
    const applyFilter = () => {
      const q = filter.value.trim().toLowerCase();
      list.querySelectorAll(".sage-chip").forEach((c) => { c.hidden = !!q && !c.dataset.search.includes(q); });
    };
    let dragged = false; // the click that may follow a drag's pointerup is not an "add in view"
    filter.addEventListener("input", applyFilter);
    list.addEventListener("click", (e) => {
      const chip = e.target.closest(".sage-chip");
      if (chip && SageFlow.canvas && !dragged) SageFlow.canvas.addInView(chip.dataset.type);
    });
    list.addEventListener("pointerdown", (e) => {
      const chip = e.target.closest(".sage-chip");
      if (!chip || e.button !== 0) return;
      const start = {x: e.clientX, y: e.clientY};
      let ghost = null;
      const move = (m) => {
        if (!ghost && Math.hypot(m.clientX - start.x, m.clientY - start.y) < 5) return;
        if (!ghost) document.body.append((ghost = make("div", `sage-chip sage-ghost sage-cat-${chip.dataset.category}`, chip.textContent)));
        ghost.style.left = `${m.clientX + 6}px`;
        ghost.style.top = `${m.clientY + 6}px`;
      };
      const up = (u) => {
        document.removeEventListener("pointermove", move);
        document.removeEventListener("pointerup", up);
        if (!ghost) return;
        ghost.remove();
        dragged = true;
        setTimeout(() => { dragged = false; }, 0);
        if (SageFlow.canvas) SageFlow.canvas.drop(chip.dataset.type, u.clientX, u.clientY);
      };
      document.addEventListener("pointermove", move);
      document.addEventListener("pointerup", up);
    });
    watch("value", render);
    render();
  }

  function mountCanvas(element, props, watch, send) {
    const canvas = new FlowCanvas(element, send);
    SageFlow.canvas = canvas;
    watch("value", () => canvas.receive(JSON.parse(props.value)));
    canvas.receive(JSON.parse(props.value));
  }

  window.SageFlow = {mountCanvas, mountPalette, canvas: null};
})();
