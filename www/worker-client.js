// The page's side of the worker protocol (see the top of worker.js): post messages, subscribe to
// replies by type, and await a request's reply. Every message from the worker is also dispatched
// on `document` as a `websd-message` event, so that tests and tools can observe the protocol.
// `restart` replaces a crashed worker with a fresh one; subscriptions carry over.

export class WorkerClient {
  constructor(url) {
    this.url = url;
    this.listeners = new Map();
    this.pending = new Set(); // reject functions of the requests awaiting a reply
    this.onfailure = null;    // (message) => void: the worker script itself failed to start
    this.start();
  }

  start() {
    const worker = new Worker(this.url, { type: 'module' });
    this.worker = worker;
    worker.onmessage = ({ data }) => {
      if (worker !== this.worker) return; // a message the replaced worker sent before it ended
      document.dispatchEvent(new CustomEvent('websd-message', { detail: data }));
      for (const fn of [...(this.listeners.get(data.type) ?? [])]) fn(data);
    };
    worker.onerror = (e) => { if (worker === this.worker) this.onfailure?.(e.message ?? 'unknown error'); };
  }

  /** Ends the worker and starts a new one; every request still waiting fails with `reason`. */
  restart(reason) {
    this.worker.terminate();
    for (const reject of [...this.pending]) reject(new Error(reason));
    this.pending.clear();
    this.start();
  }

  /** Calls `fn(message)` for every message of `type`; returns a function that unsubscribes. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  post(message) { this.worker.postMessage(message); }

  /**
   * Posts `message`; resolves with the first reply whose type is in `replyTypes`, rejects with the
   * first {type:'error'} of `phase`, or when the worker is restarted.
   */
  request(message, replyTypes, phase) {
    return new Promise((resolve, reject) => {
      const offs = [];
      const finish = (fn, value) => { offs.forEach((off) => off()); this.pending.delete(fail); fn(value); };
      const fail = (error) => finish(reject, error);
      this.pending.add(fail);
      for (const type of replyTypes) offs.push(this.on(type, (data) => finish(resolve, data)));
      offs.push(this.on('error', (data) => { if (data.phase === phase) fail(new Error(data.message)); }));
      this.post(message);
    });
  }
}
