// The engine client and the protocol's request objects pull in vscode-jsonrpc and node's
// child_process plumbing (~100 ms to load on a busy machine). activate() must stay cheap, so they
// are loaded once, on the first call here — when the user first asks for a model — and every
// caller after that gets the same modules synchronously. esbuild keeps a `require` inside a
// function as a lazily initialised part of the same bundle.
type EngineModules = {
  client: typeof import('../client/engineClient');
  messages: typeof import('../protocol/messages');
};

let loaded: EngineModules | undefined;

export function engineModules(): EngineModules {
  loaded ??= {
    client: require('../client/engineClient') as EngineModules['client'],
    messages: require('../protocol/messages') as EngineModules['messages'],
  };
  return loaded;
}

/** The protocol's requests and notifications (loads the engine client on first use). */
export function protocol(): EngineModules['messages'] {
  return engineModules().messages;
}
