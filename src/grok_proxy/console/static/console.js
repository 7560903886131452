// grok-proxy team console. Every member-supplied string reaches the page through
// textContent (never innerHTML), and every change goes through /admin via the bridge.
"use strict";

(() => {
  const LIMITS = [
    ["rpm", "Requests / minute", "number"],
    ["tpm", "Tokens / minute", "number"],
    ["tokens_per_day", "Tokens / day", "number"],
    ["tokens_per_month", "Tokens / month", "number"],
    ["dollars_per_day", "Dollars / day", "number"],
    ["dollars_per_month", "Dollars / month", "number"],
    ["models", "Allowed models (e.g. grok-4*, comma separated)", "list"],
    ["routes", "Allowed routes (e.g. chat/completions)", "list"],
  ];
  const state = { csrf: "", window: "day", measure: "cost", rows: [], sort: ["cost_usd", -1], editing: null };
  const $ = (id) => document.getElementById(id);

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function emptyRow(body, text, columns) {
    const tr = el("tr");
    tr.append(el("td", text, { colspan: String(columns), class: "hint" }));
    body.append(tr);
  }

  function say(text, isError) {
    const box = $("message");
    box.textContent = text;
    box.className = isError ? "error" : "ok";
    box.setAttribute("role", isError ? "alert" : "status");
    box.hidden = !text;
  }

  async function call(method, path, body) {
    const headers = { "x-csrf-token": state.csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    const answer = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (answer.status === 401 && path !== "/console/session") { signedOut(); throw new Error("Signed out."); }
    const data = answer.headers.get("content-type")?.includes("json") ? await answer.json() : null;
    if (!answer.ok) {
      const error = (data && data.error) || {};
      throw new Error(`${answer.status} ${error.code || ""}: ${error.message || answer.statusText}`);
    }
    return data;
  }
  const admin = (method, path, body) => call(method, "/console/api/admin" + path, body);

  // sign in and out
  function signedOut() {
    state.csrf = "";
    $("app").hidden = true; $("sign-out").hidden = true; $("sign-in").hidden = false;
  }
  async function signedIn(csrf) {
    state.csrf = csrf;
    $("sign-in").hidden = true; $("app").hidden = false; $("sign-out").hidden = false;
    await refresh();
  }
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const data = await call("POST", "/console/session", { token: $("token").value });
      $("token").value = "";
      $("sign-in-error").hidden = true;
      await signedIn(data.csrf);
    } catch (error) { $("sign-in-error").textContent = error.message; $("sign-in-error").hidden = false; }
  });
  $("sign-out").addEventListener("click", async () => {
    await call("DELETE", "/console/session").catch(() => null);
    signedOut();
  });

  // limit fields, shared by the add and edit forms
  function limitFields(form) {
    for (const [name, label, kind] of LIMITS) {
      const input = el("input", null, { name, autocomplete: "off" });
      if (kind === "number") { input.type = "number"; input.min = "0"; input.step = "any"; input.inputMode = "decimal"; }
      const wrap = el("label", label + " ", kind === "list" ? { class: "wide" } : {});
      wrap.append(input);
      form.append(wrap);
    }
  }
  function limitsOf(form, keepEmpty) {
    const data = {};
    for (const [name, , kind] of LIMITS) {
      const raw = form.elements[name].value.trim();
      if (!raw) { if (keepEmpty) data[name] = null; continue; }
      data[name] = kind === "number" ? Number(raw) : raw.split(",").map((s) => s.trim()).filter(Boolean);
    }
    return data;
  }
  function showKey(name, key) {
    $("new-key-name").textContent = name;
    $("new-key-value").value = key;
    $("new-key").hidden = false;
    $("new-key-value").select();
  }
  $("copy-key").addEventListener("click", async () => {
    const input = $("new-key-value");
    input.select();
    try { await navigator.clipboard.writeText(input.value); say("Key copied."); }
    catch { say("Select the key and copy it (Ctrl+C / long press).", true); }
  });
  $("hide-key").addEventListener("click", () => { $("new-key-value").value = ""; $("new-key").hidden = true; });

  const addForm = $("add-form");
  limitFields(addForm);
  addForm.append(el("button", "Add member", { type: "submit" }));
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await admin("POST", "/members", { name: addForm.elements.name.value, ...limitsOf(addForm, false) });
      addForm.reset();
      showKey(answer.member.name, answer.key);
      say(`Added ${answer.member.name}.`);
      await loadMembers();
    } catch (error) { say(error.message, true); }
  });

  const editForm = $("edit-form");
  limitFields(editForm);
  const editButtons = el("div", null, { class: "row wide" });
  editButtons.append(el("button", "Save", { type: "submit" }), el("button", "Cancel", { type: "button", id: "cancel-edit" }));
  editForm.append(editButtons);
  $("cancel-edit").addEventListener("click", () => { editForm.hidden = true; state.editing = null; });
  editForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await admin("PATCH", "/members/" + encodeURIComponent(state.editing), limitsOf(editForm, true));
      say(`Limits of ${state.editing} saved.`);
      editForm.hidden = true; state.editing = null;
      await Promise.all([loadMembers(), loadBudgets()]);
    } catch (error) { say(error.message, true); }
  });
  function edit(member) {
    state.editing = member.name;
    $("edit-name").textContent = member.name;
    for (const [name, , kind] of LIMITS) {
      const value = member.limits[name];
      editForm.elements[name].value = value === undefined ? "" : kind === "list" ? value.join(", ") : value;
    }
    editForm.hidden = false;
    editForm.scrollIntoView({ block: "nearest" });
  }

  // members
  function describeLimits(limits) {
    const parts = Object.entries(limits).map(([name, value]) => `${name}=${Array.isArray(value) ? value.join(",") : value}`);
    return parts.length ? parts.join(" ") : "none";
  }
  function action(label, handler, confirmText) {
    const button = el("button", label, { type: "button" });
    button.addEventListener("click", async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      try { await handler(); } catch (error) { say(error.message, true); }
    });
    return button;
  }
  async function loadMembers() {
    const { data } = await admin("GET", "/members");
    const body = $("member-table").tBodies[0];
    body.replaceChildren();
    for (const member of data) {
      const path = "/members/" + encodeURIComponent(member.name);
      const row = el("tr", null, { "data-member": member.name });
      row.append(el("td", member.name), el("td", member.disabled ? "disabled" : "active"),
        el("td", member.keys ?? ""), el("td", describeLimits(member.limits), { class: "limits-text" }));
      const actions = el("td", null, { class: "actions" });
      if (member.source === "database") {
        actions.append(
          action("Limits", async () => edit(member)),
          action(member.disabled ? "Enable" : "Disable", async () => {
            await admin("PATCH", path, { disabled: !member.disabled });
            say(`${member.name} ${member.disabled ? "enabled" : "disabled"}.`);
            await loadMembers();
          }),
          action("New key", async () => {
            const answer = await admin("POST", path + "/rotate-key", { keep_old: false });
            showKey(member.name, answer.key); say(`New key for ${member.name}; its old keys no longer work.`);
            await loadMembers();
          }, `Replace every key of ${member.name}? Its current keys stop working.`),
          action("Add key", async () => {
            const answer = await admin("POST", path + "/rotate-key", { keep_old: true });
            showKey(member.name, answer.key); say(`Another key for ${member.name}; its other keys still work.`);
            await loadMembers();
          }),
          action("Revoke keys", async () => {
            const answer = await admin("POST", path + "/revoke-keys", {});
            say(`${answer.revoked} key(s) of ${member.name} revoked; "New key" gives it one again.`);
            await loadMembers();
          }, `Revoke every key of ${member.name}? They stop working, and no new one is made.`),
          action("Delete", async () => {
            await admin("DELETE", path);
            say(`${member.name} deleted; its usage stays in the totals.`);
            await loadMembers();
          }, `Delete ${member.name} and its keys? This cannot be undone.`),
        );
      } else {
        actions.append(el("span", "set in GROK_PROXY_API_KEYS", { class: "hint" }));
      }
      row.append(actions);
      body.append(row);
    }
  }

  // usage
  function chartUrl(kind) {
    return `/console/chart/${kind}.svg?window=${state.window}&measure=${state.measure}&at=${Date.now()}`;
  }
  function pressed(groupId, attr, value) {
    for (const button of $(groupId).querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset[attr] === value));
    }
  }
  async function loadUsage() {
    pressed("windows", "window", state.window);
    pressed("measures", "measure", state.measure);
    for (const kind of ["timeline", "member", "model"]) $("chart-" + kind).src = chartUrl(kind);
    $("csv").href = `/console/api/usage.csv?window=${state.window}`;
    const { data } = await call("GET", `/console/api/usage?window=${state.window}`);
    state.rows = data;
    drawUsage();
  }
  function drawUsage() {
    const [key, direction] = state.sort;
    const rows = [...state.rows].sort((a, b) => {
      const x = a[key], y = b[key];
      return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * direction;
    });
    const body = $("usage-table").tBodies[0];
    body.replaceChildren();
    for (const row of rows) {
      const tr = el("tr");
      tr.append(el("td", row.member), el("td", row.model), el("td", row.requests, { class: "num" }),
        el("td", row.prompt_tokens, { class: "num" }), el("td", row.completion_tokens, { class: "num" }),
        el("td", row.tokens, { class: "num" }), el("td", row.cost_usd.toFixed(6), { class: "num" }));
      body.append(tr);
    }
    if (!rows.length) emptyRow(body, "No requests in this window.", 7);
    for (const th of $("usage-table").tHead.rows[0].cells) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (direction > 0 ? "ascending" : "descending") : "none");
    }
  }
  for (const th of $("usage-table").tHead.rows[0].cells) {
    th.tabIndex = 0;
    const sort = () => {
      const key = th.dataset.key;
      state.sort = [key, state.sort[0] === key ? -state.sort[1] : (th.classList.contains("num") ? -1 : 1)];
      drawUsage();
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); } });
  }
  $("windows").addEventListener("click", (event) => {
    const value = event.target.dataset?.window;
    if (value) { state.window = value; loadUsage().catch((error) => say(error.message, true)); }
  });
  $("measures").addEventListener("click", (event) => {
    const value = event.target.dataset?.measure;
    if (value) { state.measure = value; loadUsage().catch((error) => say(error.message, true)); }
  });
  $("refresh").addEventListener("click", () => refresh());

  // budgets and failures
  const number = (value) => (Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(4));
  async function loadBudgets() {
    const { data } = await call("GET", "/console/api/budgets");
    const body = $("budget-table").tBodies[0];
    body.replaceChildren();
    for (const row of data) {
      const tr = el("tr", null, row.left <= 0 ? { class: "spent" } : {});
      tr.append(el("td", row.member), el("td", row.budget.replaceAll("_", " ")),
        el("td", number(row.limit), { class: "num" }), el("td", number(row.used), { class: "num" }),
        el("td", number(row.left), { class: "num" }));
      body.append(tr);
    }
    if (!data.length) emptyRow(body, "No member has a token or dollar budget.", 5);
  }
  async function loadFailures() {
    const { data } = await call("GET", "/console/api/failures");
    const body = $("failure-table").tBodies[0];
    body.replaceChildren();
    for (const row of data) {
      const tr = el("tr");
      tr.append(el("td", row.at.replace("T", " ").replace("+00:00", "")), el("td", row.member),
        el("td", row.status, { class: "num" }), el("td", row.code ?? ""), el("td", row.model ?? ""));
      body.append(tr);
    }
    if (!data.length) emptyRow(body, "No failed requests recorded.", 5);
  }

  async function refresh() {
    try {
      await Promise.all([loadMembers(), loadUsage(), loadBudgets(), loadFailures()]);
      document.body.dataset.loaded = String(Date.now());
    } catch (error) { say(error.message, true); }
  }
  // Spend keeps changing while the page is open.
  setInterval(() => { if (state.csrf && !document.hidden) refresh(); }, 30000);

  call("GET", "/console/session").then((data) => signedIn(data.csrf), signedOut);
})();
