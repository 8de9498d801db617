// The page's side of the worker protocol (see the top of worker.js): post messages, subscribe to
// replies by type, and await a request's reply. Every message from the worker is also dispatched
// on `document` as a `websd-message` event, so that tests and tools can observe the protocol.

export class WorkerClient {
  constructor(url) {
    this.listeners = new Map();
    this.worker = new Worker(url, { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      document.dispatchEvent(new CustomEvent('websd-message', { detail: data }));
      for (const fn of [...(this.listeners.get(data.type) ?? [])]) fn(data);
    };
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
   * first {type:'error'} of `phase`.
   */
  request(message, replyTypes, phase) {
    return new Promise((resolve, reject) => {
      const offs = [];
      const finish = (fn, value) => { offs.forEach((off) => off()); fn(value); };
      for (const type of replyTypes) offs.push(this.on(type, (data) => finish(resolve, data)));
      offs.push(this.on('error', (data) => { if (data.phase === phase) finish(reject, new Error(data.message)); }));
      this.post(message);
    });
  }
}
