// Signing in with a bearer token, for gateways with auth.mode = "token". A browser cannot attach
// an Authorization header to an EventSource or a download link, so the token is exchanged once
// (POST /v1/session) for an HttpOnly cookie that the gateway accepts for reads only. Any API
// answer of 401 (fetchJson announces it with a "zlog:unauthorized" event) opens the form.
"use strict";

export class SignIn {
  constructor(form, signOut, onSignedIn) {
    this.form = form;
    this.input = form.querySelector("input");
    this.error = form.querySelector(".error");
    this.signOut = signOut;
    this.onSignedIn = onSignedIn;
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.submit(); });
    signOut.addEventListener("click", () => this.end());
    window.addEventListener("zlog:unauthorized", () => this.show());
  }

  show(message = "") {
    if (this.form.hidden) this.input.value = "";
    this.form.hidden = false;
    this.error.hidden = !message;
    this.error.textContent = message;
    this.input.focus();
  }

  async submit() {
    const token = this.input.value.trim();
    if (!token) { this.show("Enter a token."); return; }
    const resp = await fetch("/v1/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { this.show(body.message || `${resp.status} ${resp.statusText}`); return; }
    this.input.value = "";
    this.form.hidden = true;
    this.signOut.hidden = false;
    this.signOut.title = `Signed in for tenant ${body.tenant} (${body.role})`;
    this.onSignedIn();
  }

  /** Shows the sign-out button when the page was loaded with a session already open. */
  async check() {
    const resp = await fetch("/v1/session", { headers: { Accept: "application/json" } });
    const body = resp.ok ? await resp.json().catch(() => ({})) : {};
    this.signOut.hidden = !body.session;
    if (body.session) this.signOut.title = `Signed in for tenant ${body.tenant} (${body.role})`;
  }

  async end() {
    await fetch("/v1/session", { method: "DELETE" });
    this.signOut.hidden = true;
    window.location.reload();
  }
}
