// Talking to the daemon: every call carries the bearer token kept in this tab's session
// storage. The streams are server-sent events read from a fetch body, because EventSource
// cannot send an Authorization header.

const TOKEN_KEY = "vigil.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

function headers(extra = {}) {
  const all = { Accept: "application/json", ...extra };
  const secret = token();
  if (secret) {
    all.Authorization = `Bearer ${secret}`;
  }
  return all;
}

/// A failed call: the HTTP status (0 when the daemon could not be reached) and the daemon's
/// own message.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/// Calls the API; answers the JSON body, or throws an ApiError.
export async function call(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (failure) {
    throw new ApiError(0, `the daemon cannot be reached (${failure.message})`);
  }
  const text = await response.text();
  let value = null;
  try {
    value = text ? JSON.parse(text) : null;
  } catch {
    value = null;
  }
  if (!response.ok) {
    const message = (value && value.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return value;
}

/// Follows a server-sent event stream. `onEvent(name, data, id)` gets each event, with its
/// data parsed as JSON; `onState("live" | "reconnecting" | "denied", detail)` the state of
/// the connection. `path(lastId)` gives the URL to (re)connect to, resuming after the last
/// event's id. Returns a function that stops it.
export function follow(path, onEvent, onState) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;

  async function once() {
    const response = await fetch(path(lastId), {
      headers: headers({ Accept: "text/event-stream" }),
      signal: controller.signal,
      cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      onState("denied", new ApiError(response.status, body.error || response.statusText));
      return false;
    }
    if (response.status === 410) {
      // The change sets after our last event are gone: start again from now.
      lastId = null;
      onEvent("gone", {}, null);
      return true;
    }
    if (!response.ok || !response.body) {
      throw new Error(`${response.status} ${response.statusText}`);
    }
    onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return true;
      }
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        let id = null;
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = text;
          else if (field === "id") id = text;
          else if (field === "data") data.push(text);
        }
        if (!data.length) continue;
        if (id !== null) lastId = id;
        let parsed;
        try {
          parsed = JSON.parse(data.join("\n"));
        } catch {
          continue;
        }
        if (name === "gone") {
          lastId = null;
        }
        onEvent(name, parsed, id);
      }
    }
  }

  (async () => {
    let delay = 500;
    while (!stopped) {
      try {
        const again = await once();
        if (!again) return;
        delay = 500;
      } catch (failure) {
        if (stopped) return;
        onState("reconnecting", failure);
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();

  return () => {
    stopped = true;
    controller.abort();
  };
}
