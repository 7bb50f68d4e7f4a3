// The parts of asterisk-manager 0.2.0 (CommonJS, untyped) that src/ami/supervisor.ts uses, written from
// node_modules/asterisk-manager/lib/ami.js. Kept to what is used: anything not declared here is not relied on.
declare module 'asterisk-manager' {
  namespace AsteriskManager {
    /**
     * A parsed message as the library emits it: keys trimmed and lower-cased, repeated keys as arrays. The library
     * folds `Variable:`/`ChanVariable:` headers into an object of `name → value`.
     */
    type Message = Record<string, string | string[] | Record<string, string>>;

    /** Header names are lower-cased by the library and sent with only the first letter upper-cased. */
    interface Action {
      action: string;
      [header: string]: string | number | boolean | string[] | undefined;
    }

    /**
     * Called once with the reply whose ActionID matches: `(reply, reply)` when `Response: Error`, otherwise
     * `(undefined, reply)`. Never called when no reply comes.
     */
    type ActionCallback = (err: Message | undefined, reply?: Message) => void;

    interface Manager {
      /** Opens a TCP connection; the callback runs on `connect` only (never on failure). */
      connect(port: number, host: string, callback?: () => void): void;
      /** Sends `Action: login` with the constructor's username/password; until it succeeds other actions are held. */
      login(callback?: (err?: Message) => void): void;
      /** Returns the ActionID used. */
      action(action: Action, callback?: ActionCallback): string;
      /** `end()`s the socket if it is open and forgets it; the socket's later events still reach this emitter. */
      disconnect(callback?: () => void): void;

      /** Messages with a non-empty `Event:` header, whatever else they carry. */
      on(event: 'managerevent', listener: (event: Message) => void): this;
      on(event: 'connect', listener: () => void): this;
      on(event: 'close', listener: (hadError: boolean) => void): this;
      on(event: 'error', listener: (error: Error) => void): this;
    }
  }

  /** Without a port nothing happens until connect(); with one it connects and logs in by itself. */
  function AsteriskManager(
    port?: number,
    host?: string,
    username?: string,
    password?: string,
    events?: boolean,
  ): AsteriskManager.Manager;

  export = AsteriskManager;
}
