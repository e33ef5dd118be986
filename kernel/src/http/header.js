// The header's personal bits on pages every visitor shares (a CDN may keep them): the
// account link, the cart count and the question about recommendations, asked of
// /account/header (private, never cached). Without this script the header says
// "Sign in" and "Cart", and both links still lead where they should.
(function () {
  "use strict";

  if (!document.querySelector("[data-personal]") || !window.fetch) {
    return;
  }
  fetch("/account/header", {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  })
    .then(function (response) {
      return response.ok ? response.json() : null;
    })
    .then(function (bits) {
      if (!bits) {
        return;
      }
      var account = document.querySelector("[data-personal=account]");
      if (account && bits.signed_in) {
        account.textContent = "Account";
        account.setAttribute("href", "/account");
      }
      var cart = document.querySelector("[data-personal=cart]");
      if (cart && bits.cart_items > 0) {
        var count = document.createElement("span");
        count.className = "cart-count";
        count.textContent = String(bits.cart_items);
        cart.textContent = "Cart ";
        cart.appendChild(count);
        cart.setAttribute(
          "aria-label",
          "Cart, " + bits.cart_items + (bits.cart_items === 1 ? " item" : " items")
        );
      }
      var prompt = document.querySelector("[data-personal=analytics]");
      if (prompt && !bits.analytics_answered) {
        prompt.hidden = false;
      }
    })
    .catch(function () {
      // The header keeps its neutral links.
    });
})();
