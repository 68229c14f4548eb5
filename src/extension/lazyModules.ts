// The engine client and the protocol's request objects pull in vscode-jsonrpc and node's
// child_process plumbing. activate() must stay cheap, so they are loaded on first use only:
// esbuild keeps a `require` inside a function as a lazily initialised part of the same bundle.
type EngineModules = {
  client: typeof import('../client/engineClient');
  messages: typeof import('../protocol/messages');
};

let loaded: EngineModules | undefined;

export async function engineModules(): Promise<EngineModules> {
  loaded ??= {
    client: require('../client/engineClient') as EngineModules['client'],
    messages: require('../protocol/messages') as EngineModules['messages'],
  };
  return loaded;
}
