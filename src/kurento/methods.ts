// `invoke`: the operations of each type, as kurento-client names them. Each type's table is
// its parents' plus its own (Kurento's class hierarchy); parameters are checked here, and what
// the engine does not have is said in the error rather than faked.
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { MediaKind } from '../engine/types.js';
import { checkCandidate, checkSdp, insertCandidates } from '../protocol/sdp.js';
import { KMS, KurentoError, illegalParam } from './errors.js';
import { toKurentoError, type KurentoContext } from './context.js';
import { Element, Pipeline, type MediaObject, type ObjectType } from './objects.js';
import { MEDIA_TYPES, checkedParams, mediaTypeSchema, kurentoMediaType } from './wire.js';
import { serverInfo, kmdFor } from './server-info.js';

type Params = Record<string, unknown>;
type Method = (ctx: KurentoContext, obj: MediaObject, params: Params) => Promise<unknown>;

const ALL_KINDS: readonly MediaKind[] = ['audio', 'video', 'data'];

/** A method taking checked parameters. */
function op<S extends z.ZodType>(schema: S, fn: (ctx: KurentoContext, obj: MediaObject, p: z.output<S>) => Promise<unknown> | unknown): (name: string) => Method {
  return (name) => async (ctx, obj, params) => fn(ctx, obj, checkedParams(schema, name, 'operationParams', params));
}
const none = z.looseObject({});

function element(obj: MediaObject): Element {
  if (!(obj instanceof Element)) throw new KurentoError(KMS.MEDIA_OBJECT_METHOD_NOT_FOUND, `${obj.type} has no such method`);
  return obj;
}

/** A setting stored on the element and read back (no engine knob behind it). */
function knob(key: string, schema: z.ZodType, initial: unknown): Record<string, (name: string) => Method> {
  const cap = key[0]!.toUpperCase() + key.slice(1);
  return {
    [`get${cap}`]: op(none, (_c, o) => (element(o).knobs.has(key) ? element(o).knobs.get(key) : initial)),
    [`set${cap}`]: op(z.looseObject({ [key]: schema }), (_c, o, p) => { element(o).knobs.set(key, (p as Params)[key]); }),
  };
}

const kindsOf = (mediaType: keyof typeof MEDIA_TYPES | undefined): readonly MediaKind[] => (mediaType ? [MEDIA_TYPES[mediaType]] : ALL_KINDS);
const description = z.string().max(256).optional();
const bandwidth = z.number().int().min(0).max(10_000_000);

// ---- MediaObject ---------------------------------------------------------------------------

const mediaObject = {
  getChildren: op(none, (_c, o) => (o instanceof Pipeline ? [...o.elements].map((e) => e.id) : [])),
  getCreationTime: op(none, (_c, o) => o.creationTime),
  getMediaPipeline: op(none, (_c, o) => {
    if (o instanceof Element) return o.pipeline.id;
    if (o instanceof Pipeline) return o.id;
    throw new KurentoError(KMS.MEDIA_OBJECT_OPERATION_NOT_SUPPORTED, 'the ServerManager belongs to no pipeline');
  }),
  getParent: op(none, (c, o) => {
    if (o instanceof Element) return o.pipeline.id;
    if (o instanceof Pipeline) return c.set.manager.id;
    throw new KurentoError(KMS.MEDIA_OBJECT_OPERATION_NOT_SUPPORTED, 'the ServerManager has no parent');
  }),
  getName: op(none, (_c, o) => o.name),
  setName: op(z.looseObject({ name: z.string().max(256) }), (_c, o, p) => { o.name = p.name; }),
  getSendTagsInEvents: op(none, (_c, o) => o.sendTagsInEvents),
  setSendTagsInEvents: op(z.looseObject({ sendTagsInEvents: z.boolean() }), (_c, o, p) => { o.sendTagsInEvents = p.sendTagsInEvents; }),
  addTag: op(z.looseObject({ key: z.string().min(1).max(256), value: z.string().max(4096) }), (_c, o, p) => {
    if (!o.tags.has(p.key) && o.tags.size >= 64) throw illegalParam('addTag: an object holds at most 64 tags');
    o.tags.set(p.key, p.value);
  }),
  getTag: op(z.looseObject({ key: z.string().max(256) }), (_c, o, p) => {
    const v = o.tags.get(p.key);
    if (v === undefined) throw new KurentoError(KMS.MEDIA_OBJECT_TAG_KEY_NOT_FOUND, `Tag key '${p.key}' not found`);
    return v;
  }),
  getTags: op(none, (_c, o) => o.tagList()),
  removeTag: op(z.looseObject({ key: z.string().max(256) }), (_c, o, p) => { o.tags.delete(p.key); }),
};

// ---- MediaPipeline -------------------------------------------------------------------------

/** A short DOT drawing of a pipeline's graph: elements, and one edge per connected media kind. */
function dot(p: Pipeline): string {
  const lines = [`digraph "${p.id}" {`, '  rankdir=LR;'];
  for (const el of p.elements) lines.push(`  "${el.id}" [label="${el.elementType}\\n${el.name === el.id ? el.id.slice(-44) : el.name.replace(/"/g, "'")}"];`);
  for (const el of p.elements) {
    for (const [kind, link] of el.sources) lines.push(`  "${link.source.id}" -> "${el.id}" [label="${kind}"];`);
  }
  lines.push('}');
  return lines.join('\n');
}

const pipeline = {
  getGstreamerDot: op(none, (_c, o) => dot(o as Pipeline)),
  dumpGstreamerDot: op(none, (_c, o) => dot(o as Pipeline)),
  getLatencyStats: op(none, (_c, o) => (o as Pipeline).latencyStats),
  setLatencyStats: op(z.looseObject({ latencyStats: z.boolean() }), (_c, o, p) => { (o as Pipeline).latencyStats = p.latencyStats; }),
};

// ---- MediaElement --------------------------------------------------------------------------

const connectParams = z.looseObject({
  sink: z.string({ error: 'the sink element id is required' }).min(1).max(512),
  mediaType: mediaTypeSchema.optional(),
  sourceMediaDescription: description,
  sinkMediaDescription: description,
});

async function connect(ctx: KurentoContext, src: Element, p: z.output<typeof connectParams>): Promise<void> {
  const sink = ctx.set.lookup(p.sink, ctx.principal);
  if (!(sink instanceof Element)) throw illegalParam(`connect: '${p.sink}' is not a media element`);
  if (sink.pipeline !== src.pipeline) throw illegalParam('connect: the elements are in different pipelines');
  if (sink.elementType === 'PlayerEndpoint') throw illegalParam('connect: a PlayerEndpoint is a source only; it cannot be a sink');
  if (src.elementType === 'RecorderEndpoint') throw illegalParam('connect: a RecorderEndpoint is a sink only; it has no output');
  const kinds = kindsOf(p.mediaType).filter((k) => sink.acceptedKinds().includes(k) && src.producedKinds().includes(k));
  for (const kind of kinds) {
    const old = sink.sources.get(kind);
    if (old?.source === src) continue;
    await ctx.engine.connect(src.engineId, sink.engineId, kind);
    const link = { source: src, kind, sourceDescription: p.sourceMediaDescription ?? 'default', sinkDescription: p.sinkMediaDescription ?? 'default' };
    sink.sources.set(kind, link);
    const type = kurentoMediaType(kind);
    if (old) ctx.set.emit(old.source, 'ElementDisconnected', { sink: sink.id, mediaType: type, sourceMediaDescription: old.sourceDescription, sinkMediaDescription: old.sinkDescription });
    ctx.set.emit(src, 'ElementConnected', { sink: sink.id, mediaType: type, sourceMediaDescription: link.sourceDescription, sinkMediaDescription: link.sinkDescription });
  }
}

async function disconnect(ctx: KurentoContext, src: Element, p: z.output<typeof connectParams>): Promise<void> {
  const sink = ctx.set.lookup(p.sink, ctx.principal);
  if (!(sink instanceof Element)) throw illegalParam(`disconnect: '${p.sink}' is not a media element`);
  for (const kind of kindsOf(p.mediaType)) {
    const link = sink.sources.get(kind);
    if (link?.source !== src) continue;
    await ctx.engine.disconnect(src.engineId, sink.engineId, kind);
    sink.sources.delete(kind);
    ctx.set.emit(src, 'ElementDisconnected', { sink: sink.id, mediaType: kurentoMediaType(kind), sourceMediaDescription: link.sourceDescription, sinkMediaDescription: link.sinkDescription });
  }
}

const connectionQuery = z.looseObject({ mediaType: mediaTypeSchema.optional(), description });
const connectionData = (source: Element, sink: Element, kind: MediaKind, sourceDescription: string, sinkDescription: string) => ({
  __module__: 'kurento', __type__: 'ElementConnectionData', source: source.id, sink: sink.id, type: kurentoMediaType(kind), sourceDescription, sinkDescription,
});

const flowQuery = z.looseObject({ mediaType: mediaTypeSchema, sinkMediaDescription: description, sourceMediaDescription: description });

/** Kurento-shaped statistics from the engine's (endpoints only; other elements have none). */
async function stats(ctx: KurentoContext, el: Element, mediaType?: keyof typeof MEDIA_TYPES): Promise<Record<string, unknown>> {
  if (!el.isSdpEndpoint) return {};
  const s = await ctx.engine.getStats(el.engineId);
  const now = Date.now();
  const out: Record<string, unknown> = {};
  for (const dir of ['inbound', 'outbound'] as const) {
    for (const [kind, m] of Object.entries(s[dir]) as [MediaKind, NonNullable<(typeof s)['inbound']['audio']>][]) {
      if (kind === 'data' || (mediaType && MEDIA_TYPES[mediaType] !== kind)) continue;
      const id = `${el.id}_${dir}_${kind}`;
      out[id] = dir === 'inbound'
        ? { __module__: 'kurento', __type__: 'RTCInboundRTPStreamStats', id, type: 'inboundrtp', timestamp: Math.floor(now / 1000), timestampMillis: now, mediaType: kind, packetsReceived: m.packets, bytesReceived: m.bytes, packetsLost: m.packets_lost ?? 0, jitter: (m.jitter_ms ?? 0) / 1000, bitrate: m.bitrate }
        : { __module__: 'kurento', __type__: 'RTCOutboundRTPStreamStats', id, type: 'outboundrtp', timestamp: Math.floor(now / 1000), timestampMillis: now, mediaType: kind, packetsSent: m.packets, bytesSent: m.bytes, roundTripTime: (m.rtt_ms ?? 0) / 1000, fractionLost: m.fraction_lost ?? 0, packetsLost: m.packets_lost ?? 0, bitrate: m.bitrate };
    }
  }
  return out;
}

const mediaElement = {
  connect: op(connectParams, (c, o, p) => connect(c, element(o), p)),
  disconnect: op(connectParams, (c, o, p) => disconnect(c, element(o), p)),
  getSourceConnections: op(connectionQuery, (_c, o, p) => {
    const el = element(o);
    return [...el.sources].filter(([k, l]) => (!p.mediaType || MEDIA_TYPES[p.mediaType] === k) && (!p.description || l.sinkDescription === p.description))
      .map(([k, l]) => connectionData(l.source, el, k, l.sourceDescription, l.sinkDescription));
  }),
  getSinkConnections: op(connectionQuery, (c, o, p) => {
    const el = element(o);
    return c.set.sinkLinks(el, p.mediaType ? MEDIA_TYPES[p.mediaType] : undefined)
      .filter((l) => !p.description || l.sourceDescription === p.description)
      .map((l) => connectionData(el, l.sink, l.kind, l.sourceDescription, l.sinkDescription));
  }),
  isMediaFlowingIn: op(flowQuery, (_c, o, p) => element(o).flowingIn.has(MEDIA_TYPES[p.mediaType])),
  isMediaFlowingOut: op(flowQuery, (_c, o, p) => element(o).flowingOut.has(MEDIA_TYPES[p.mediaType])),
  // Media is forwarded as it comes: nothing is decoded and re-encoded between WebRTC peers.
  isMediaTranscoding: op(flowQuery, () => false),
  getStats: op(z.looseObject({ mediaType: mediaTypeSchema.optional() }), (c, o, p) => stats(c, element(o), p.mediaType)),
  getGstreamerDot: op(none, (_c, o) => dot(element(o).pipeline)),
  getElementGstreamerDot: op(none, (_c, o) => `digraph "${o.id}" { "${o.id}" [label="${element(o).elementType}"]; }`),
  setAudioFormat: op(none, () => { throw new KurentoError(KMS.MEDIA_OBJECT_OPERATION_NOT_SUPPORTED, 'setAudioFormat: formats are negotiated end to end; media is not re-encoded to a forced format'); }),
  setVideoFormat: op(none, () => { throw new KurentoError(KMS.MEDIA_OBJECT_OPERATION_NOT_SUPPORTED, 'setVideoFormat: formats are negotiated end to end; media is not re-encoded to a forced format'); }),
  ...knob('minEncoderBitrate', bandwidth, 0),
  ...knob('maxEncoderBitrate', bandwidth, 0),
  ...knob('encoderBitrate', bandwidth, 300_000),
  ...knob('minOutputBitrate', bandwidth, 0),
  ...knob('maxOutputBitrate', bandwidth, 0),
};

// ---- SdpEndpoint, BaseRtpEndpoint ----------------------------------------------------------

function checkClientSdp(el: Element, sdp: string): void {
  try {
    checkSdp(sdp, el.elementType === 'RtpEndpoint' ? 'rtp' : 'webrtc');
  } catch (err) {
    throw toKurentoError(err, KMS.SDP_PARSE_ERROR);
  }
}

async function flushCandidates(ctx: KurentoContext, el: Element): Promise<void> {
  const pending = el.pendingCandidates;
  el.pendingCandidates = [];
  for (const c of pending) await ctx.engine.addIceCandidate(el.engineId, c).catch((err: unknown) => ctx.log.debug({ err, object: el.id }, 'buffered candidate refused'));
}

const sdpEndpoint = {
  processOffer: op(z.looseObject({ offer: z.string().min(1).max(256 * 1024) }), async (c, o, p) => {
    const el = element(o);
    if (el.sdp.negotiated && el.elementType === 'WebRtcEndpoint') throw new KurentoError(KMS.SDP_END_POINT_ALREADY_NEGOTIATED, 'Endpoint already negotiated');
    checkClientSdp(el, p.offer);
    let answer: string;
    try {
      answer = await c.engine.processOffer(el.engineId, p.offer);
    } catch (err) {
      throw toKurentoError(err, KMS.SDP_END_POINT_PROCESS_OFFER_ERROR);
    }
    el.sdp = { local: answer, remote: p.offer, offered: false, negotiated: true };
    await flushCandidates(c, el);
    return answer;
  }),
  generateOffer: op(z.looseObject({ options: z.looseObject({ offerToReceiveAudio: z.boolean().optional(), offerToReceiveVideo: z.boolean().optional(), nkmediaOfferData: z.boolean().optional() }).optional() }), async (c, o, p) => {
    const el = element(o);
    if (el.sdp.negotiated && el.elementType === 'WebRtcEndpoint') throw new KurentoError(KMS.SDP_END_POINT_ALREADY_NEGOTIATED, 'Endpoint already negotiated');
    let offer: string;
    try {
      offer = await c.engine.generateOffer(el.engineId, {
        audio: p.options?.offerToReceiveAudio ?? true,
        video: p.options?.offerToReceiveVideo ?? true,
        // Extension: options.nkmediaOfferData chooses per offer (Kurento: the constructor's useDataChannels).
        data: p.options?.nkmediaOfferData ?? el.useDataChannels,
      });
    } catch (err) {
      throw toKurentoError(err, KMS.SDP_END_POINT_GENERATE_OFFER_ERROR);
    }
    el.sdp = { local: offer, offered: true, negotiated: false };
    return offer;
  }),
  processAnswer: op(z.looseObject({ answer: z.string().min(1).max(256 * 1024) }), async (c, o, p) => {
    const el = element(o);
    if (!el.sdp.offered) throw new KurentoError(KMS.SDP_END_POINT_NOT_OFFER_GENERATED, 'Offer not generated. It is not possible to process an answer.');
    if (el.sdp.negotiated) throw new KurentoError(KMS.SDP_END_POINT_ANSWER_ALREADY_PROCCESED, 'Sdp Answer already processed');
    checkClientSdp(el, p.answer);
    try {
      await c.engine.processAnswer(el.engineId, p.answer);
    } catch (err) {
      throw toKurentoError(err, KMS.SDP_END_POINT_PROCESS_ANSWER_ERROR);
    }
    el.sdp = { ...el.sdp, remote: p.answer, negotiated: true };
    await flushCandidates(c, el);
    return el.sdp.local;
  }),
  getLocalSessionDescriptor: op(none, (_c, o) => {
    const el = element(o);
    if (!el.sdp.local) throw new KurentoError(KMS.SDP_END_POINT_NO_LOCAL_SDP_ERROR, 'No local SDP: call processOffer or generateOffer first');
    // Once gathering is over the local description carries every candidate (non-trickle clients read it then).
    return el.gathering === 'done' && el.localCandidates.length > 0 ? insertCandidates(el.sdp.local, el.localCandidates) : el.sdp.local;
  }),
  getRemoteSessionDescriptor: op(none, (_c, o) => {
    const el = element(o);
    if (!el.sdp.remote) throw new KurentoError(KMS.SDP_END_POINT_NO_REMOTE_SDP_ERROR, 'No remote SDP yet');
    return el.sdp.remote;
  }),
  getMaxVideoRecvBandwidth: op(none, (_c, o) => element(o).knobs.get('maxVideoRecvBandwidth') ?? 0),
  // The one bandwidth knob the engine has: REMB toward the client caps what it sends us.
  setMaxVideoRecvBandwidth: op(z.looseObject({ maxVideoRecvBandwidth: bandwidth }), async (c, o, p) => {
    const el = element(o);
    await c.engine.setMaxBitrate(el.engineId, p.maxVideoRecvBandwidth > 0 ? p.maxVideoRecvBandwidth * 1000 : null);
    el.knobs.set('maxVideoRecvBandwidth', p.maxVideoRecvBandwidth);
  }),
  ...knob('maxAudioRecvBandwidth', bandwidth, 0),
};

const baseRtpEndpoint = {
  getMediaState: op(none, (_c, o) => element(o).mediaState),
  getConnectionState: op(none, (_c, o) => element(o).connectionState),
  requestKeyframe: op(none, async (c, o) => { await c.engine.requestKeyframe(element(o).engineId); }),
  ...knob('minVideoRecvBandwidth', bandwidth, 0),
  ...knob('minVideoSendBandwidth', bandwidth, 0),
  ...knob('maxVideoSendBandwidth', bandwidth, 0),
  ...knob('mtu', z.number().int().min(576).max(9000), 1200),
  ...knob('rembParams', z.looseObject({}), {}),
};

// ---- WebRtcEndpoint ------------------------------------------------------------------------

const candidateParam = z.looseObject({
  candidate: z.looseObject({ candidate: z.string().max(1024), sdpMid: z.string().max(64).optional(), sdpMLineIndex: z.number().int().min(0).max(63) }),
});

const webRtcEndpoint = {
  gatherCandidates: op(none, async (c, o) => {
    const el = element(o);
    if (!el.sdp.local) throw new KurentoError(KMS.ICE_GATHER_CANDIDATES_ERROR, 'gatherCandidates: call processOffer or generateOffer first');
    if (el.gathering !== 'new') return;
    el.gathering = 'gathering';
    await c.engine.gatherCandidates(el.engineId);
  }),
  addIceCandidate: op(candidateParam, async (c, o, p) => {
    const el = element(o);
    const cand = p.candidate;
    try {
      if (checkCandidate(cand.candidate) === 'end') return;
    } catch (err) {
      throw toKurentoError(err, KMS.ICE_ADD_CANDIDATE_ERROR);
    }
    const init = { candidate: cand.candidate, sdpMid: cand.sdpMid, sdpMLineIndex: cand.sdpMLineIndex };
    if (!el.sdp.remote) {
      // As KMS: candidates that come before the remote description wait for it.
      const pending = el.pendingCandidates;
      if (pending.length >= 64) throw new KurentoError(KMS.ICE_ADD_CANDIDATE_ERROR, 'addIceCandidate: at most 64 candidates wait for the remote description');
      pending.push(init);
      return;
    }
    try {
      await c.engine.addIceCandidate(el.engineId, init);
    } catch (err) {
      throw toKurentoError(err, KMS.ICE_ADD_CANDIDATE_ERROR);
    }
  }),
  getIceConnectionState: op(none, (_c, o) => element(o).iceState),
  getICECandidatePairs: op(none, () => []),
  getDtlsConnectionState: op(none, (_c, o) => (element(o).connectionState === 'CONNECTED' ? 'CONNECTED' : 'NEW')),
  // ICE servers are the server's (configuration `ice`); per-endpoint values are kept and read back only.
  ...knob('stunServerAddress', z.string().max(256), ''),
  ...knob('stunServerPort', z.number().int().min(0).max(65535), 3478),
  ...knob('turnUrl', z.string().max(1024), ''),
  ...knob('iceTcp', z.boolean(), false),
  ...knob('networkInterfaces', z.string().max(1024), ''),
  ...knob('externalIPv4', z.string().max(64), ''),
  ...knob('externalIPv6', z.string().max(64), ''),
  ...knob('externalAddress', z.string().max(64), ''),
  createDataChannel: op(none, () => { throw new KurentoError(KMS.MEDIA_OBJECT_OPERATION_NOT_SUPPORTED, 'createDataChannel: data channels are opened by the peer; the endpoint forwards them'); }),
  closeDataChannel: op(none, () => { throw new KurentoError(KMS.MEDIA_OBJECT_OPERATION_NOT_SUPPORTED, 'closeDataChannel: data channels are opened and closed by the peer'); }),
};

// ---- UriEndpoint, PlayerEndpoint, RecorderEndpoint ----------------------------------------

async function stopRecorder(c: KurentoContext, el: Element): Promise<unknown> {
  if (el.stopping) return el.stopping;
  if (el.uriState === 'STOP') return undefined;
  el.finished = true;
  el.stopping = c.engine.recorderStop(el.engineId).then((r) => { el.uriState = 'STOP'; return r; }, (err: unknown) => { throw toKurentoError(err); });
  try { return await el.stopping; } finally { el.stopping = undefined; }
}

const uriEndpoint = {
  getUri: op(none, (_c, o) => element(o).uri),
  getState: op(none, (_c, o) => element(o).uriState),
  pause: op(none, async (c, o) => {
    const el = element(o);
    if (el.uriState !== 'START') return;
    if (el.elementType === 'PlayerEndpoint') await c.engine.playerPause(el.engineId);
    else await c.engine.recorderPause(el.engineId);
    el.uriState = 'PAUSE';
  }),
  stop: op(none, async (c, o) => {
    const el = element(o);
    if (el.elementType === 'PlayerEndpoint') {
      if (el.started) await c.engine.playerStop(el.engineId);
      el.started = false;
      el.uriState = 'STOP';
      return;
    }
    // KMS returns at once and finishes the file in the background: `Stopped` follows.
    void stopRecorder(c, el).catch((err: unknown) => c.log.warn({ err, object: el.id }, 'recorder stop failed'));
  }),
};

const player = {
  play: op(none, async (c, o) => {
    const el = element(o);
    if (el.uriState === 'START') return;
    try {
      if (el.started && el.uriState === 'PAUSE') await c.engine.playerResume(el.engineId);
      else {
        await c.engine.playerStart(el.engineId, el.target, 1);
        el.started = true;
      }
    } catch (err) {
      throw toKurentoError(err);
    }
    el.uriState = 'START';
  }),
  getPosition: op(none, (c, o) => c.engine.playerPosition(element(o).engineId)),
  setPosition: op(z.looseObject({ position: z.number().int().min(0) }), async (c, o, p) => {
    try {
      await c.engine.playerSeek(element(o).engineId, p.position);
    } catch (err) {
      throw toKurentoError(err, KMS.PLAYER_SEEK_FAIL);
    }
  }),
  getVideoInfo: op(none, async (c, o) => {
    const info = await c.engine.playerInfo(element(o).engineId).catch((err: unknown) => { throw toKurentoError(err); });
    return { __module__: 'kurento', __type__: 'VideoInfo', isSeekable: info.is_seekable, seekableInit: info.first_position, seekableEnd: info.last_position, duration: info.duration };
  }),
};

const recorder = {
  record: op(none, async (c, o) => {
    const el = element(o);
    if (el.stopping) await el.stopping.catch(() => undefined);
    // The file of a stopped recorder is final: a new recording needs a new RecorderEndpoint.
    if (el.finished) throw new KurentoError(KMS.MEDIA_OBJECT_NOT_AVAILABLE, 'record: this recorder was stopped and its file finalised; create a new RecorderEndpoint to record again');
    if (el.uriState === 'START') return;
    try {
      if (el.uriState === 'PAUSE') await c.engine.recorderResume(el.engineId);
      else await c.engine.recorderStart(el.engineId, el.recording!.path, el.recording!.format);
    } catch (err) {
      throw toKurentoError(err);
    }
    el.uriState = 'START';
  }),
  stopAndWait: op(none, async (c, o) => { await stopRecorder(c, element(o)); }),
};

// ---- ServerManager -------------------------------------------------------------------------

const serverManager = {
  getInfo: op(none, () => serverInfo()),
  getPipelines: op(none, (c) => c.set.pipelines(c.principal).map((p) => p.id)),
  getSessions: op(none, (c) => c.set.sessionIds(c.principal)),
  getMetadata: op(none, () => JSON.stringify({ server: 'nkmedia-ts', protocol: 'kurento' })),
  getCpuCount: op(none, () => availableParallelism()),
  getUsedCpu: op(z.looseObject({ interval: z.number().int().min(1).max(10_000) }), async (_c, _o, p) => {
    const start = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, p.interval));
    const used = process.cpuUsage(start);
    const elapsedUs = Number(process.hrtime.bigint() - t0) / 1000;
    return (100 * (used.user + used.system)) / (elapsedUs * availableParallelism());
  }),
  getUsedMemory: op(none, () => Math.round(process.memoryUsage().rss / 1024)),
  getKmd: op(z.looseObject({ moduleName: z.string().max(128) }), (_c, _o, p) => {
    const kmd = kmdFor(p.moduleName, METHOD_NAMES);
    if (!kmd) throw new KurentoError(KMS.SERVER_MANAGER_ERROR_KMD_NOT_FOUND, `No KMD for module '${p.moduleName}'`);
    return kmd;
  }),
};

// ---- nkmedia extensions --------------------------------------------------------------------
// Operations KMS does not have, for clients that know this server (src/engine/remote/ drives a
// node through them; docs/KURENTO.md "Extensions"). Each is the engine call of the same name,
// with the engine's own values: nothing is rounded or renamed on the way.

/** The version of the extension set; a client uses the extensions only if it knows this one. */
export const NKMEDIA_EXTENSIONS_VERSION = 1;

const endpoint = (o: MediaObject): Element => {
  const el = element(o);
  if (!el.isSdpEndpoint) throw new KurentoError(KMS.MEDIA_OBJECT_METHOD_NOT_FOUND, `${o.type} is not an SDP endpoint`);
  return el;
};

const extElement = {
  nkmediaRequestKeyframe: op(none, async (c, o) => { await c.engine.requestKeyframe(element(o).engineId); }),
};

const extSdpEndpoint = {
  /** Bits per second (null: no limit), where setMaxVideoRecvBandwidth takes kbps. */
  nkmediaSetMaxBitrate: op(z.looseObject({ bitsPerSecond: z.number().int().min(0).max(100_000_000_000).nullable() }), async (c, o, p) => {
    const el = endpoint(o);
    await c.engine.setMaxBitrate(el.engineId, p.bitsPerSecond);
    el.knobs.set('maxVideoRecvBandwidth', p.bitsPerSecond ? Math.round(p.bitsPerSecond / 1000) : 0);
  }),
  nkmediaSetVideoLayer: op(z.looseObject({ layer: z.string().min(1).max(64) }), async (c, o, p) => { await c.engine.setVideoLayer(endpoint(o).engineId, p.layer); }),
  nkmediaNegotiatedCodecs: op(none, (c, o) => c.engine.negotiatedCodecs(endpoint(o).engineId)),
  /** The engine's statistics as they are (getStats gives Kurento's RTC stats made from them). */
  nkmediaGetStats: op(none, async (c, o) => {
    const s = await c.engine.getStats(endpoint(o).engineId);
    return { connectionState: s.connectionState, inbound: s.inbound, outbound: s.outbound };
  }),
};

const extPlayer = {
  /** play with a loop count (0: forever; play plays once), returning the file's video info as the engine gives it. */
  nkmediaPlay: op(z.looseObject({ loops: z.number().int().min(0).max(1_000_000) }), async (c, o, p) => {
    const el = element(o);
    let info;
    try {
      info = await c.engine.playerStart(el.engineId, el.target, p.loops);
    } catch (err) {
      throw toKurentoError(err);
    }
    el.started = true;
    el.uriState = 'START';
    return info;
  }),
};

const extRecorder = {
  /** stopAndWait returning what was recorded (RecordingResult); null when it was stopped before. */
  nkmediaStopAndWait: op(none, async (c, o) => (await stopRecorder(c, element(o))) ?? null),
};

const extServerManager = {
  /** Tells a client this is nkmedia-ts and which extension set it speaks. */
  nkmediaInfo: op(none, () => ({ server: 'nkmedia-ts', extensions: NKMEDIA_EXTENSIONS_VERSION })),
  /** The engine's counters (elements, endpoints, UDP sockets) of the whole node, for leak checks and monitoring. */
  nkmediaCounters: op(none, (c) => c.engine.counters()),
};

// ---- tables --------------------------------------------------------------------------------

type Table = Record<string, (name: string) => Method>;
const elementTypes = { ...mediaObject, ...mediaElement, ...extElement };
const sdpTypes = { ...elementTypes, ...sdpEndpoint, ...baseRtpEndpoint, ...extSdpEndpoint };
const TABLES: Record<ObjectType, Table> = {
  ServerManager: { ...mediaObject, ...serverManager, ...extServerManager },
  MediaPipeline: { ...mediaObject, ...pipeline },
  PassThrough: elementTypes,
  WebRtcEndpoint: { ...sdpTypes, ...webRtcEndpoint },
  RtpEndpoint: sdpTypes,
  PlayerEndpoint: { ...elementTypes, ...uriEndpoint, ...player, ...extPlayer },
  RecorderEndpoint: { ...elementTypes, ...uriEndpoint, ...recorder, ...extRecorder },
};

const METHODS = new Map<ObjectType, Map<string, Method>>(
  (Object.entries(TABLES) as [ObjectType, Table][]).map(([type, table]) => [type, new Map(Object.entries(table).map(([name, make]) => [name, make(name)]))]),
);

/** Each type's operation names (for the KMD description). */
export const METHOD_NAMES: Record<ObjectType, string[]> = Object.fromEntries([...METHODS].map(([t, m]) => [t, [...m.keys()].sort()])) as Record<ObjectType, string[]>;

export async function invoke(ctx: KurentoContext, obj: MediaObject, operation: unknown, params: unknown): Promise<unknown> {
  if (typeof operation !== 'string') throw illegalParam("invoke: 'operation' must be a string");
  const method = METHODS.get(obj.type)?.get(operation);
  if (!method) throw new KurentoError(KMS.MEDIA_OBJECT_METHOD_NOT_FOUND, `Method '${operation}' with ${Object.keys((params as object) ?? {}).length} parameters not found in ${obj.type}`);
  if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) throw illegalParam('invoke: operationParams must be an object');
  return method(ctx, obj, (params ?? {}) as Params);
}
