// Progressive enhancement of search; every page works without it.
// - The header's search box offers products and categories while the shopper types
//   (GET /api/v1/search/suggest), as a listbox the arrow keys move through.
// - On the results page, ticking a filter or choosing a sort sends the form at once
//   (without this script, the "Apply" button does).
(function () {
  "use strict";

  var box = document.querySelector("form.site-search input[name=q]");
  if (box) {
    var list = document.createElement("ul");
    list.id = "search-suggestions";
    list.className = "suggestions";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    box.parentNode.appendChild(list);
    box.setAttribute("role", "combobox");
    box.setAttribute("aria-autocomplete", "list");
    box.setAttribute("aria-controls", list.id);
    box.setAttribute("aria-expanded", "false");
    var timer = null;
    var asked = "";
    var active = -1;

    var close = function () {
      list.hidden = true;
      list.textContent = "";
      active = -1;
      box.setAttribute("aria-expanded", "false");
      box.removeAttribute("aria-activedescendant");
    };

    var option = function (href, text, kind) {
      var item = document.createElement("li");
      item.setAttribute("role", "option");
      item.id = "suggestion-" + list.children.length;
      var link = document.createElement("a");
      link.href = href;
      link.textContent = text;
      if (kind) {
        var note = document.createElement("span");
        note.className = "muted";
        note.textContent = " " + kind;
        link.appendChild(note);
      }
      item.appendChild(link);
      list.appendChild(item);
    };

    var show = function (answer) {
      close();
      (answer.categories || []).forEach(function (c) {
        option("/c/" + encodeURIComponent(c.slug), c.name, "category");
      });
      (answer.products || []).forEach(function (p) {
        option("/p/" + encodeURIComponent(p.slug), p.name, "");
      });
      if (list.children.length > 0) {
        list.hidden = false;
        box.setAttribute("aria-expanded", "true");
      }
    };

    var ask = function () {
      var q = box.value.trim();
      if (q === asked) return;
      asked = q;
      if (q.length === 0 || q.length > 100) {
        close();
        return;
      }
      fetch("/api/v1/search/suggest?q=" + encodeURIComponent(q), {
        headers: { Accept: "application/json" }
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) {
          if (answer && answer.q === q && box.value.trim() === q) show(answer);
        })
        .catch(function () { close(); });
    };

    var move = function (by) {
      var items = list.children;
      if (items.length === 0) return;
      if (active >= 0) items[active].removeAttribute("aria-selected");
      active = (active + by + items.length) % items.length;
      items[active].setAttribute("aria-selected", "true");
      box.setAttribute("aria-activedescendant", items[active].id);
    };

    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 120);
    });
    box.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { move(1); e.preventDefault(); }
      else if (e.key === "ArrowUp") { move(-1); e.preventDefault(); }
      else if (e.key === "Escape") { close(); }
      else if (e.key === "Enter" && active >= 0) {
        var link = list.children[active].querySelector("a");
        if (link) { window.location.href = link.href; e.preventDefault(); }
      }
    });
    box.addEventListener("blur", function () { setTimeout(close, 200); });
  }

  var filters = document.getElementById("search-filters");
  if (filters) {
    filters.addEventListener("change", function (e) {
      var t = e.target;
      if (t && (t.type === "checkbox" || t.tagName === "SELECT")) filters.submit();
    });
  }
})();
