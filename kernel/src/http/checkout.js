// The script of the pages that take a card: the checkout page, and the card form of a
// subscription in the account (served as /assets/checkout.js, pinned by its hash in the
// page's Content-Security-Policy and `integrity`; see http/security.rs).
//
// 1. On the checkout page, when the country or the shipping method changes, it asks the
//    shop for the order's totals (/checkout/quote) and shows them in place: shipping,
//    tax, the total, and the card section once the order can be shipped there. (Without
//    JavaScript the form's "Update total" button does the same by reloading the page.)
// 2. On "Place order" (#checkout-form) or "Use this card" (#card-form) it sends the card
//    from the browser to the payment processor, puts the token it answers into the
//    form's `payment_token` and submits only that: the card inputs have no name, so the
//    card never reaches the shop.
(function () {
  // The card, from the browser to the processor, when `form` is submitted (but for a
  // submit `skip` says is not a payment). Problems are shown in `errorBox`.
  function tokenizeOnSubmit(form, errorBox, button, skip) {
    var busy = false;
    function value(id) { return document.getElementById(id).value.trim(); }
    function fail(message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      if (button) button.disabled = false;
      busy = false;
    }
    form.addEventListener('submit', function (event) {
      if (skip && skip(event)) return;
      event.preventDefault();
      if (busy) return;
      busy = true;
      button.disabled = true;
      errorBox.hidden = true;
      var card = {
        number: value('card-number').replace(/[\s-]/g, ''),
        exp_month: parseInt(value('card-exp-month'), 10),
        exp_year: parseInt(value('card-exp-year'), 10),
        cvc: value('card-cvc')
      };
      fetch(form.dataset.tokenizeUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(card)
      }).then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; },
          function () { return { ok: false, body: {} }; });
      }).then(function (answer) {
        if (!answer.ok || !answer.body.token) {
          var error = answer.body.error || {};
          fail('Your card could not be checked: ' + (error.message || 'please check the card details') + '.');
          return;
        }
        form.elements['payment_token'].value = answer.body.token;
        // The card inputs have no name: only the token is posted.
        HTMLFormElement.prototype.submit.call(form);
      }).catch(function () {
        fail('The payment processor could not be reached. Please try again.');
      });
    });
  }

  // The checkout page: totals in place, then the card.
  function checkout(form) {
    var review = document.getElementById('review-order');
    var cardSection = document.getElementById('card-section');
    var summary = document.getElementById('order-summary');
    var asked = 0;

    if (review) review.hidden = true;
    function requote() {
      var country = form.elements['country'].value;
      var method = form.elements['shipping_method'].value;
      var mine = ++asked;
      var query = '?country=' + encodeURIComponent(country) +
        '&shipping_method=' + encodeURIComponent(method);
      var points = form.elements['redeem_points'];
      if (points) query += '&redeem_points=' + encodeURIComponent(points.value);
      fetch('/checkout/quote' + query, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (mine !== asked) return; // a newer question is on its way
          summary.innerHTML = answer.summary_html;
          if (answer.methods_html) form.elements['shipping_method'].innerHTML = answer.methods_html;
          form.elements['expected_total_minor'].value = answer.total_minor == null ? '' : answer.total_minor;
          ['f-quote-error', 'f-country-error'].forEach(function (id) {
            var old = document.getElementById(id);
            if (old) old.remove();
          });
          if (answer.error) {
            // Said at the field it is about: the country, or the points.
            var field = form.elements[answer.error_field] || form.elements['country'];
            var note = document.createElement('p');
            note.className = 'field-error';
            note.id = 'f-quote-error';
            note.textContent = answer.error;
            field.parentNode.appendChild(note);
          }
          if (cardSection) cardSection.hidden = answer.total_minor == null;
        })
        .catch(function () {
          if (review) review.hidden = false; // fall back to the reload
        });
    }
    form.elements['country'].addEventListener('change', requote);
    form.elements['shipping_method'].addEventListener('change', requote);
    if (form.elements['redeem_points']) form.elements['redeem_points'].addEventListener('change', requote);

    if (!form.dataset.tokenizeUrl) return;
    tokenizeOnSubmit(form, document.getElementById('checkout-error'), document.getElementById('place-order'),
      function (event) { return event.submitter && event.submitter.name === 'step'; }); // "Update total"
  }

  var checkoutForm = document.getElementById('checkout-form');
  if (checkoutForm) checkout(checkoutForm);
  // A subscription's new card.
  var cardForm = document.getElementById('card-form');
  if (cardForm && cardForm.dataset.tokenizeUrl) {
    tokenizeOnSubmit(cardForm, document.getElementById('card-error'), document.getElementById('replace-card'), null);
  }
})();
