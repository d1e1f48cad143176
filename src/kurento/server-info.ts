// What the ServerManager tells about this server: the modules kurento-client checks for at
// connect time (core, elements, filters), the types each can create, and a KMD (Kurento's
// module description) generated from the types and methods actually provided.
import { EVENTS, HIERARCHY, type ObjectType } from './objects.js';

/** The KMS release whose protocol this server speaks (kurento-client 7.3.0's). */
export const KMS_PROTOCOL_VERSION = '7.3.0';

const MODULES: Record<string, ObjectType[]> = {
  core: ['MediaPipeline', 'PassThrough'],
  elements: ['WebRtcEndpoint', 'RtpEndpoint', 'PlayerEndpoint', 'RecorderEndpoint'],
  // Listed because kurento-client refuses servers without it; it provides no filter.
  filters: [],
};

export function serverInfo(): Record<string, unknown> {
  return {
    __module__: 'kurento',
    __type__: 'ServerInfo',
    version: KMS_PROTOCOL_VERSION,
    type: 'KMS',
    capabilities: ['transactions'],
    modules: Object.entries(MODULES).map(([name, factories]) => ({
      __module__: 'kurento', __type__: 'ModuleInfo', version: KMS_PROTOCOL_VERSION, name, generationTime: 'nkmedia-ts', factories,
    })),
  };
}

/** A KMD-shaped JSON text for one module, or undefined for a module we do not have. */
export function kmdFor(moduleName: string, methods: Record<ObjectType, string[]>): string | undefined {
  const types = Object.hasOwn(MODULES, moduleName) ? MODULES[moduleName]! : undefined;
  if (!types) return undefined;
  const extra: ObjectType[] = moduleName === 'core' ? ['ServerManager'] : [];
  return JSON.stringify({
    name: moduleName,
    version: KMS_PROTOCOL_VERSION,
    kurento: { version: KMS_PROTOCOL_VERSION },
    remoteClasses: [...types, ...extra].map((t) => ({
      name: t,
      extends: HIERARCHY[t][0]?.replace(/^kurento\./, ''),
      methods: methods[t].map((name) => ({ name })),
      events: EVENTS[t],
    })),
  }, null, 2);
}
