// The passkey step of the sign-in page: asks the flow API for WebAuthn
// request options, lets the browser's authenticator answer, hands the
// answer back, then continues the page's form.
(function () {
  "use strict";
  var button = document.getElementById("passkey");
  if (!button || !window.PublicKeyCredential) {
    if (button) { button.hidden = true; }
    return;
  }
  function b64urlToBuffer(s) {
    var pad = s.length % 4 === 0 ? "" : "====".slice(s.length % 4);
    var bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + pad);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  function bufferToB64url(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function options(pk) {
    pk.challenge = b64urlToBuffer(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = b64urlToBuffer(c.id); });
    return pk;
  }
  function answer(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bufferToB64url(cred.rawId), type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        authenticatorData: bufferToB64url(r.authenticatorData),
        clientDataJSON: bufferToB64url(r.clientDataJSON),
        signature: bufferToB64url(r.signature),
        userHandle: r.userHandle ? bufferToB64url(r.userHandle) : null
      }
    };
  }
  function say(text) {
    var box = document.getElementById("error");
    if (!box) {
      box = document.createElement("div");
      box.id = "error"; box.className = "error"; box.setAttribute("role", "alert");
      button.parentNode.insertBefore(box, button);
    }
    box.textContent = text;
  }
  function post(body) {
    return fetch("/authentication/authenticate", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().then(function (json) {
        if (!res.ok) { throw new Error(json.detail || "The passkey was not accepted."); }
        return json;
      });
    });
  }
  button.addEventListener("click", function () {
    var signIn = button.getAttribute("data-sign-in");
    var field = document.getElementById("identifier");
    var ask = { session_id: signIn, method: "passkey" };
    if (field && field.value.trim()) { ask.identifier = field.value.trim(); }
    button.disabled = true;
    post(ask).then(function (req) {
      return navigator.credentials.get({ publicKey: options(req.request.publicKey) });
    }).then(function (cred) {
      return post({ session_id: signIn, method: "passkey", assertion: answer(cred) });
    }).then(function () {
      document.getElementById("passkey-done").click();
    }).catch(function (e) {
      button.disabled = false;
      say(e && e.message ? e.message : "The passkey was not accepted.");
    });
  });
})();
