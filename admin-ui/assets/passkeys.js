// Passkeys in the admin (admin-ui/src/auth.rs): adding one on the two-factor page, and
// answering the sign-in's challenge with one. A form marked `data-passkey` ("create" or
// "get") carries the kernel's options in `data-passkey-options` (JSON, binary values
// base64url); its button asks the browser, and the browser's answer goes back in the
// form's hidden `credential` field, posted as any form of the admin is (CSRF field
// included). No inline script: the page's Content-Security-Policy allows none.
(function () {
  "use strict";

  function fromBase64url(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) {
      base64 += "=";
    }
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeCredentials(list) {
    (list || []).forEach(function (credential) {
      credential.id = fromBase64url(credential.id);
    });
  }

  function creationOptions(options) {
    var publicKey = options.publicKey;
    publicKey.challenge = fromBase64url(publicKey.challenge);
    publicKey.user.id = fromBase64url(publicKey.user.id);
    decodeCredentials(publicKey.excludeCredentials);
    return { publicKey: publicKey };
  }

  function requestOptions(options) {
    var publicKey = options.publicKey;
    publicKey.challenge = fromBase64url(publicKey.challenge);
    decodeCredentials(publicKey.allowCredentials);
    return { publicKey: publicKey };
  }

  function credentialJson(credential) {
    var answer = credential.response;
    var response = { clientDataJSON: toBase64url(answer.clientDataJSON) };
    if (answer.attestationObject) {
      response.attestationObject = toBase64url(answer.attestationObject);
    } else {
      response.authenticatorData = toBase64url(answer.authenticatorData);
      response.signature = toBase64url(answer.signature);
      if (answer.userHandle) {
        response.userHandle = toBase64url(answer.userHandle);
      }
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      extensions: {}
    });
  }

  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    var button = form.querySelector("[data-passkey-go]");
    var status = form.querySelector("[data-passkey-status]");
    if (!button || !status) {
      return;
    }
    if (!window.PublicKeyCredential || !navigator.credentials) {
      status.textContent = "This browser does not support passkeys.";
      button.disabled = true;
      return;
    }
    button.addEventListener("click", function (event) {
      event.preventDefault();
      var options = JSON.parse(form.getAttribute("data-passkey-options"));
      var asked = form.getAttribute("data-passkey") === "create"
        ? navigator.credentials.create(creationOptions(options))
        : navigator.credentials.get(requestOptions(options));
      button.disabled = true;
      status.textContent = "Waiting for your passkey…";
      asked.then(function (credential) {
        form.querySelector("input[name=credential]").value = credentialJson(credential);
        form.submit();
      }, function (err) {
        button.disabled = false;
        status.textContent = "The passkey did not answer (" + err.name + "). Try again.";
      });
    });
  });
})();
