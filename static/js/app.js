// Thalian page behaviour. No inline handlers: everything is wired from data attributes (strict CSP).
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function wire(root) {
    // Organization switcher: navigate on change.
    root.querySelectorAll("[data-org-switch-select]").forEach(function (sel) {
      if (sel.dataset.wired) return; sel.dataset.wired = "1";
      sel.addEventListener("change", function () { window.location.assign(sel.value); });
    });
    // "Select all on this page" checkboxes: data-select-all="name-of-item-checkboxes".
    root.querySelectorAll("[data-select-all]").forEach(function (box) {
      if (box.dataset.wired) return; box.dataset.wired = "1";
      box.addEventListener("change", function () {
        document.querySelectorAll('input[type=checkbox][name="' + box.dataset.selectAll + '"]').forEach(function (c) {
          c.checked = box.checked;
        });
      });
    });
    // Column chooser: <fieldset data-columns="scope" data-columns-target="#table"> with data-column="key"
    // checkboxes. The choice is remembered in the cookie thalian-cols-<scope> (keys joined by ".", "none" for
    // none), which the server reads to render only those columns; a change re-renders the target in place.
    root.querySelectorAll("[data-columns]").forEach(function (set) {
      if (set.dataset.wired) return; set.dataset.wired = "1";
      set.addEventListener("change", function () {
        var shown = Array.prototype.filter.call(set.querySelectorAll("[data-column]"), function (b) { return b.checked; })
          .map(function (b) { return b.dataset.column; });
        document.cookie = "thalian-cols-" + set.dataset.columns + "=" + (shown.join(".") || "none") +
          "; path=/; max-age=31536000; samesite=lax" + (window.location.protocol === "https:" ? "; secure" : "");
        // The fieldset's hx-sync="this:replace" drops a reload still under way when the next change comes.
        if (window.htmx) window.htmx.ajax("GET", window.location.href, { source: set, target: set.dataset.columnsTarget, swap: "outerHTML" });
        else window.location.reload();
      });
    });
    // Confirmation before destructive or bulk actions: data-confirm="message" on a form or button.
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.wired) return; form.dataset.wired = "1";
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
    wireReview(root);
    wireReassign(root);
    // Filters fold away on narrow screens behind one button.
    root.querySelectorAll("[data-filter-toggle]").forEach(function (btn) {
      if (btn.dataset.wired) return; btn.dataset.wired = "1";
      btn.addEventListener("click", function () {
        var bar = btn.closest(".filter-bar");
        var open = bar.classList.toggle("is-open");
        btn.setAttribute("aria-expanded", open ? "true" : "false");
      });
    });
    root.querySelectorAll("button[data-confirm]").forEach(function (btn) {
      if (btn.dataset.wired) return; btn.dataset.wired = "1";
      btn.addEventListener("click", function (ev) {
        if (!window.confirm(btn.dataset.confirm)) ev.preventDefault();
      });
    });
    // Auto-submit filter controls: data-autosubmit on a form submits it when a select changes.
    root.querySelectorAll("form[data-autosubmit] select").forEach(function (sel) {
      if (sel.dataset.wired) return; sel.dataset.wired = "1";
      sel.addEventListener("change", function () {
        if (sel.form.requestSubmit) sel.form.requestSubmit(); else sel.form.submit();
      });
    });
  }

  // ---- Layout: the sidebar collapses (wide screens, remembered) or slides in (narrow screens) ----------------
  var NARROW = window.matchMedia ? window.matchMedia("(max-width: 900px)") : { matches: false };
  function store(key, value) { try { window.localStorage.setItem(key, value); } catch (e) { /* private mode */ } }
  function stored(key) { try { return window.localStorage.getItem(key); } catch (e) { return null; } }

  function wireLayout() {
    var html = document.documentElement;
    html.classList.add("js");
    var toggle = document.querySelector("[data-nav-toggle]");
    if (!toggle) return;
    var sync = function () {
      var open = NARROW.matches ? html.classList.contains("nav-open") : !html.classList.contains("nav-collapsed");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    };
    if (stored("thalian-nav") === "collapsed") html.classList.add("nav-collapsed");
    sync();
    toggle.addEventListener("click", function () {
      if (NARROW.matches) {
        html.classList.toggle("nav-open");
      } else {
        html.classList.toggle("nav-collapsed");
        store("thalian-nav", html.classList.contains("nav-collapsed") ? "collapsed" : "open");
      }
      sync();
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && html.classList.contains("nav-open")) { html.classList.remove("nav-open"); sync(); toggle.focus(); }
    });
    if (NARROW.addEventListener) NARROW.addEventListener("change", function () { html.classList.remove("nav-open"); sync(); });
  }

  // ---- Review screen ---------------------------------------------------------------------------------------
  // Rows are <tr class="item-row"> (is-decided once decided). j/k move, a/r/e decide, x selects, ? helps;
  // Revoke and Exception ask for the reason (and the exception's expiry) in a small dialog.
  var review = { current: null, pendingButton: null };

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.item-row")); }

  function setCurrent(row, focus) {
    if (!row) return;
    if (review.current && review.current !== row) review.current.classList.remove("is-current");
    review.current = row;
    row.classList.add("is-current");
    if (focus) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function nextUndecided(after) {
    var all = rows();
    var start = after ? all.indexOf(after) + 1 : 0;
    for (var i = 0; i < all.length; i++) {
      var row = all[(start + i) % all.length];
      // Read from the buttons, not the row's class: htmx settles a swapped row's class a moment later.
      if (decideForm(row) && !row.querySelector('button.decide[aria-pressed="true"]')) return row;
    }
    return null;
  }

  function updateSelection() {
    var count = document.querySelectorAll('input[name="item_ids"]:checked').length;
    document.querySelectorAll("[data-selected-count]").forEach(function (el) { el.textContent = String(count); });
    document.querySelectorAll("[data-needs-selection]").forEach(function (btn) { btn.disabled = count === 0; });
    document.querySelectorAll("[data-selection-group]").forEach(function (group) { group.hidden = count === 0; });
  }

  // A row the member may decide has a form.decide-form (named "Decide <item>") posting to the item.
  function decideForm(row) { return row ? row.querySelector("form.decide-form") : null; }

  function askReason(button, submit) {
    var dialog = document.getElementById("decide-dialog");
    if (!dialog || !dialog.showModal) { submit("", ""); return; }
    var decision = button.value;
    var row = button.closest("tr.item-row");
    var form = dialog.querySelector("form");
    form.reset();
    dialog.querySelector("#decide-dialog-title").textContent = (decision === "revoke" ? "Revoke" : "Exception") +
      (row ? "" : " for the selected items");
    dialog.querySelector("[data-dialog-subject]").textContent = row ? decideForm(row).getAttribute("aria-label").replace(/^Decide /, "") :
      document.querySelectorAll('input[name="item_ids"]:checked').length + " selected item(s)";
    dialog.querySelector("[data-expiry-field]").hidden = decision !== "exception";
    dialog.querySelector("[data-dialog-confirm]").textContent = decision === "revoke" ? "Revoke" : "Grant exception";
    dialog.querySelector("[data-dialog-confirm]").className = decision === "revoke" ? "danger" : "warn";
    review.pendingSubmit = submit;
    review.returnFocus = row || button;
    dialog.showModal();
    form.querySelector("textarea").focus();
  }

  function submitRow(row, decision, reason, expires) {
    var form = decideForm(row);
    if (!form || !window.htmx) return;
    var values = { decision: decision };  // the CSRF token travels in the body's hx-headers
    if (reason) values.reason = reason;
    if (expires) values.expires_on = expires;
    row.classList.add("is-busy");
    window.htmx.ajax("POST", form.getAttribute("action"), { source: form, target: "#" + row.id, swap: "outerHTML", values: values });
  }

  function decide(row, decision) {
    if (!decideForm(row)) return;
    var button = row.querySelector('button.decide[value="' + decision + '"]');
    if (!button) return;
    if (button.dataset.askReason) {
      askReason(button, function (reason, expires) { submitRow(row, decision, reason, expires); });
    } else {
      submitRow(row, decision, "", "");
    }
  }

  function wireReview(root) {
    root.querySelectorAll("button[data-ask-reason]").forEach(function (btn) {
      if (btn.dataset.wiredAsk) return; btn.dataset.wiredAsk = "1";
      btn.addEventListener("click", function (ev) {
        ev.preventDefault();
        var row = btn.closest("tr.item-row");
        if (row) { setCurrent(row, false); decide(row, btn.value); return; }
        var bulk = document.getElementById(btn.getAttribute("form"));
        if (!bulk) return;
        askReason(btn, function (reason, expires) {
          bulk.querySelector('[name="reason"]').value = reason;
          bulk.querySelector('[name="expires_on"]').value = expires;
          var hidden = document.createElement("input");
          hidden.type = "hidden"; hidden.name = "decision"; hidden.value = btn.value;
          bulk.appendChild(hidden);
          bulk.submit();
        });
      });
    });
    // Approve (and any decision without a dialog) posts the row's form through htmx, which swaps the row.
    root.querySelectorAll("form.decide-form button:not([data-ask-reason])").forEach(function (btn) {
      if (btn.dataset.wired) return; btn.dataset.wired = "1";
      btn.addEventListener("click", function (ev) {
        var row = btn.closest("tr.item-row");
        if (!window.htmx || !row) return;
        ev.preventDefault();
        setCurrent(row, false);
        submitRow(row, btn.value, "", "");
      });
    });
    root.querySelectorAll("tr.item-row").forEach(function (row) {
      if (row.dataset.wiredRow) return; row.dataset.wiredRow = "1";
      row.addEventListener("focusin", function () { setCurrent(row, false); });
      row.addEventListener("click", function () { setCurrent(row, false); });
    });
    root.querySelectorAll('input[name="item_ids"], [data-select-all]').forEach(function (box) {
      if (box.dataset.wiredSel) return; box.dataset.wiredSel = "1";
      box.addEventListener("change", updateSelection);
    });
    root.querySelectorAll("[data-keys-help]").forEach(function (btn) {
      if (btn.dataset.wired) return; btn.dataset.wired = "1";
      btn.addEventListener("click", function () { var d = document.getElementById("keys-dialog"); if (d && d.showModal) d.showModal(); });
    });
    if (root.querySelector && (root.querySelector("[data-selected-count]") || root.querySelector('input[name="item_ids"]'))) updateSelection();
  }

  function wireDecideDialog() {
    var dialog = document.getElementById("decide-dialog");
    if (!dialog) return;
    dialog.addEventListener("close", function () {
      var form = dialog.querySelector("form");
      var submit = review.pendingSubmit;
      review.pendingSubmit = null;
      if (dialog.returnValue === "confirm" && submit) {
        submit(form.querySelector('[name="reason"]').value.trim(), form.querySelector('[name="expires_on"]').value);
      } else if (review.returnFocus) {
        review.returnFocus.focus();
      }
    });
  }

  // Reassign (delegate): one row, the checked rows or everything in view, in a dialog asking for the new
  // reviewer and the reason. The form posts with htmx; a refusal shows inside the dialog.
  function openReassign(mode, subject, extra, returnFocus) {
    var dialog = document.getElementById("reassign-dialog");
    if (!dialog || !dialog.showModal) return;
    var form = dialog.querySelector("form");
    form.reset();
    form.querySelectorAll("[data-reassign-extra]").forEach(function (el) { el.remove(); });
    form.querySelector('[name="mode"]').value = mode;
    form.querySelector('[name="next"]').value = window.location.pathname + window.location.search;
    (extra || []).forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = pair[0]; input.value = pair[1];
      input.setAttribute("data-reassign-extra", "");
      form.appendChild(input);
    });
    dialog.querySelector("[data-reassign-subject]").textContent = subject;
    document.getElementById("reassign-error").textContent = "";
    review.returnFocus = returnFocus;
    dialog.showModal();
    form.querySelector('[name="to"]').focus();
  }

  // The item a row's Reassign button names ("Reassign <item>", the item part visually hidden).
  function reassignLabel(btn) {
    var hidden = btn.querySelector(".visually-hidden");
    return hidden ? hidden.textContent.trim() : "";
  }

  function reassignRow(row) {
    if (!row || !row.querySelector("button[data-reassign]")) return;
    var id = row.querySelector("button[data-reassign]").dataset.reassign;
    openReassign("item", reassignLabel(row.querySelector("button[data-reassign]")), [["item_id", id]], row);
  }

  function wireReassign(root) {
    root.querySelectorAll("button[data-reassign]").forEach(function (btn) {
      if (btn.dataset.wiredReassign) return; btn.dataset.wiredReassign = "1";
      btn.addEventListener("click", function (ev) {
        ev.preventDefault(); ev.stopPropagation();
        var row = btn.closest("tr.item-row");
        setCurrent(row, false);
        openReassign("item", reassignLabel(btn), [["item_id", btn.dataset.reassign]], btn);
      });
    });
    root.querySelectorAll("[data-reassign-selected]").forEach(function (btn) {
      if (btn.dataset.wiredReassign) return; btn.dataset.wiredReassign = "1";
      btn.addEventListener("click", function () {
        var ids = Array.prototype.map.call(document.querySelectorAll('input[name="item_ids"]:checked'),
          function (box) { return ["item_ids", box.value]; });
        if (!ids.length) return;
        openReassign("selected", ids.length + " selected item(s)", ids, btn);
      });
    });
    root.querySelectorAll("[data-reassign-all]").forEach(function (btn) {
      if (btn.dataset.wiredReassign) return; btn.dataset.wiredReassign = "1";
      btn.addEventListener("click", function () {
        var filters = Array.prototype.map.call(btn.form.querySelectorAll('input[type="hidden"]'),
          function (input) { return ["filter_" + input.name, input.value]; });
        openReassign("all", "All " + btn.dataset.reassignAll + " item(s) in view", filters, btn);
      });
    });
    var dialog = root.querySelector && root.querySelector("#reassign-dialog");
    if (dialog && !dialog.dataset.wired) {
      dialog.dataset.wired = "1";
      dialog.querySelector("[data-close-dialog]").addEventListener("click", function () { dialog.close(); });
      dialog.addEventListener("close", function () { if (review.returnFocus) review.returnFocus.focus(); });
    }
  }

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    if (tag === "input") return ["checkbox", "radio", "button", "submit"].indexOf(target.type) === -1;
    return tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function wireReviewKeys() {
    if (!document.querySelector(".review-table")) return;
    document.addEventListener("keydown", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
      if (document.querySelector("dialog[open]")) return;
      var all = rows();
      var row = review.current && document.body.contains(review.current) ? review.current : null;
      var index = row ? all.indexOf(row) : -1;
      switch (ev.key) {
        case "j": setCurrent(all[Math.min(index + 1, all.length - 1)], true); break;
        case "k": setCurrent(all[Math.max(index - 1, 0)], true); break;
        case "a": decide(row, "approve"); break;
        case "r": decide(row, "revoke"); break;
        case "e": decide(row, "exception"); break;
        case "d": reassignRow(row); break;
        case "x": {
          var box = row && row.querySelector('input[name="item_ids"]');
          if (box) { box.checked = !box.checked; updateSelection(); }
          break;
        }
        case "Enter": {
          if (ev.target !== row || !row) return;
          var link = row.querySelector(".cell-identity a");
          if (link) link.click();
          break;
        }
        case "?": { var d = document.getElementById("keys-dialog"); if (d && d.showModal) d.showModal(); break; }
        default: return;
      }
      ev.preventDefault();
    });
    // After a row is replaced by its decided version, move on to the next undecided row.
    document.body.addEventListener("htmx:afterSwap", function (ev) {
      var swapped = ev.detail && ev.detail.elt;
      if (!swapped) return;
      var fresh = swapped.id && swapped.id.indexOf("item-") === 0 ? document.getElementById(swapped.id) : null;
      if (!fresh || !fresh.classList.contains("item-row")) return;
      window.Thalian.wire(fresh);
      if (fresh.querySelector(".error")) { setCurrent(fresh, true); return; }
      var next = nextUndecided(fresh);
      if (next) { setCurrent(next, true); return; }
      setCurrent(fresh, false);
      review.focusSignOff = true;
    });
    document.body.addEventListener("htmx:afterSettle", function (ev) {
      var target = ev.detail && ev.detail.elt;
      if (review.focusSignOff && target && target.id === "review-bar") {
        var btn = document.querySelector("[data-sign-off]");
        if (btn) { review.focusSignOff = false; btn.focus(); }
      }
    });
    var first = nextUndecided(null) || rows()[0];
    if (first) setCurrent(first, false);
  }

  // Tables that scroll sideways on small screens must be reachable with the keyboard.
  function markScrollable() {
    document.querySelectorAll("main .table-wrap, main table").forEach(function (el) {
      var scrolls = el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== "visible";
      if (scrolls && !el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
        el.dataset.scrollFocus = "1";
        if (!el.getAttribute("aria-label") && !el.getAttribute("role")) {
          var caption = el.querySelector("caption");
          el.setAttribute("role", "region");
          el.setAttribute("aria-label", caption ? caption.textContent.trim() : "Table");
        }
      } else if (!scrolls && el.dataset.scrollFocus) {
        el.removeAttribute("tabindex");
        delete el.dataset.scrollFocus;
      }
    });
  }

  // ---- Campaign wizard: one step at a time, the preview beside it -------------------------------------------
  function wireWizard() {
    var form = document.querySelector("form[data-wizard]");
    if (!form) return;
    var steps = Array.prototype.slice.call(form.querySelectorAll(".wizard-step"));
    var tabs = Array.prototype.slice.call(document.querySelectorAll("[data-step-to]"));
    var prev = form.querySelector("[data-step-prev]");
    var next = form.querySelector("[data-step-next]");
    var current = 0;
    function show(index, focus) {
      current = Math.max(0, Math.min(index, steps.length - 1));
      steps.forEach(function (step, i) { step.classList.toggle("is-current", i === current); });
      tabs.forEach(function (tab, i) {
        if (i === current) tab.setAttribute("aria-current", "step"); else tab.removeAttribute("aria-current");
        tab.classList.toggle("done", i < current);
      });
      prev.disabled = current === 0;
      next.hidden = current === steps.length - 1;
      if (focus) {
        var heading = steps[current].querySelector("h2");
        if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
      }
    }
    tabs.forEach(function (tab, i) { tab.addEventListener("click", function () { show(i, true); }); });
    prev.addEventListener("click", function () { show(current - 1, true); });
    next.addEventListener("click", function () { show(current + 1, true); });
    // Review stages: the buttons change the "Review stages" choice, which shows the stage blocks (CSS).
    var stageCount = form.querySelector("#id_stage_count");
    function stepStages(delta) {
      var value = Math.max(1, Math.min(stageCount.options.length, parseInt(stageCount.value, 10) + delta));
      stageCount.value = String(value);
      stageCount.dispatchEvent(new Event("change", { bubbles: true }));
      var block = form.querySelector('[data-stage-block="' + value + '"] h3');
      if (delta > 0 && block) { block.setAttribute("tabindex", "-1"); block.focus(); }
    }
    if (stageCount) {
      var add = form.querySelector("[data-add-stage]");
      var remove = form.querySelector("[data-remove-stage]");
      if (add) add.addEventListener("click", function () { stepStages(1); });
      if (remove) remove.addEventListener("click", function () { stepStages(-1); });
    }
    // After a refused submit, open the step with the first error.
    var firstError = form.querySelector(".errorlist, [aria-invalid=true]");
    var start = 0;
    if (firstError) steps.forEach(function (step, i) { if (step.contains(firstError) && !start) start = i; });
    show(start, false);
  }

  function wirePickers() {
    document.querySelectorAll("[data-picker]").forEach(function (picker) {
      var search = picker.querySelector("[data-picker-search]");
      var chosen = picker.querySelector("[data-picker-chosen]");
      var boxes = Array.prototype.slice.call(picker.querySelectorAll("input[type=checkbox]"));
      var count = function () {
        var names = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.parentNode.textContent.trim(); });
        chosen.textContent = names.length ? names.length + " chosen: " + names.join(", ") : "None chosen: the filters below decide.";
      };
      search.addEventListener("input", function () {
        var q = search.value.trim().toLowerCase();
        boxes.forEach(function (b) {
          var row = b.closest("div") || b.parentNode;
          row.hidden = q !== "" && b.parentNode.textContent.toLowerCase().indexOf(q) === -1;
        });
      });
      // Enter in the search box must not submit the wizard.
      search.addEventListener("keydown", function (ev) { if (ev.key === "Enter") ev.preventDefault(); });
      boxes.forEach(function (b) { b.addEventListener("change", count); });
      count();
    });
  }

  // ---- Forms whose fields depend on a choice: data-show-when="field=value[,value]" ----------------------------
  function wireConditional(root) {
    root.querySelectorAll("[data-show-when]").forEach(function (el) {
      if (el.dataset.wiredWhen) return; el.dataset.wiredWhen = "1";
      var parts = el.dataset.showWhen.split("=");
      var form = el.closest("form");
      if (!form) return;
      var values = parts[1].split(",");
      var apply = function () {
        var field = form.elements[parts[0]];
        var value = field ? (field.value !== undefined ? field.value : "") : "";
        if (field && field.length && !field.tagName) { // radio group
          value = ""; Array.prototype.forEach.call(field, function (r) { if (r.checked) value = r.value; });
        }
        var shown = values.indexOf(value) !== -1;
        el.hidden = !shown;
        el.querySelectorAll("input, select, textarea").forEach(function (input) { input.disabled = !shown; });
      };
      form.addEventListener("change", apply);
      apply();
    });
  }

  onReady(function () {
    wireWizard();
    wirePickers();
    wireConditional(document);
    markScrollable();
    window.addEventListener("resize", markScrollable);
    document.addEventListener("htmx:afterSettle", markScrollable);
    wireLayout();
    wire(document);
    wireDecideDialog();
    wireReviewKeys();
  });
  document.addEventListener("htmx:afterSettle", function (ev) { wire(ev.target); });
  window.Thalian = { wire: wire };
})();
