// `create`: pipelines and the element types this server provides, from their constructor
// parameters. Endpoints that hold sockets are admitted by the same quota as NkMEDIA sessions.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { MediaKind } from '../engine/types.js';
import { KMS, KurentoError, illegalParam } from './errors.js';
import { toKurentoError, type KurentoContext } from './context.js';
import { Element, NOT_PROVIDED, Pipeline, type ElementType, type MediaObject } from './objects.js';
import { playerUri, recorderTarget } from './uris.js';
import { checkedParams } from './wire.js';

const ELEMENT_TYPES: readonly ElementType[] = ['WebRtcEndpoint', 'RtpEndpoint', 'PassThrough', 'PlayerEndpoint', 'RecorderEndpoint'];

const PROFILES = {
  WEBM: { format: 'webm', kinds: ['audio', 'video'] },
  WEBM_AUDIO_ONLY: { format: 'webm', kinds: ['audio'] },
  WEBM_VIDEO_ONLY: { format: 'webm', kinds: ['video'] },
  MKV: { format: 'webm', kinds: ['audio', 'video'] },
  MP4: { format: 'mp4', kinds: ['audio', 'video'] },
  MP4_AUDIO_ONLY: { format: 'mp4', kinds: ['audio'] },
  MP4_VIDEO_ONLY: { format: 'mp4', kinds: ['video'] },
} as const satisfies Record<string, { format: 'webm' | 'mp4'; kinds: MediaKind[] }>;

const pipelineRef = z.string({ error: 'mediaPipeline: the id of a MediaPipeline is required' }).min(1).max(512);

const schemas = {
  WebRtcEndpoint: z.looseObject({
    mediaPipeline: pipelineRef,
    recvonly: z.boolean().optional(),
    sendonly: z.boolean().optional(),
    useDataChannels: z.boolean().optional(),
    certificateKeyType: z.enum(['RSA', 'ECDSA']).optional(),
    qosDscp: z.string().max(32).optional(),
  }),
  RtpEndpoint: z.looseObject({ mediaPipeline: pipelineRef, crypto: z.unknown().optional(), useIpv6: z.boolean().optional() }),
  PassThrough: z.looseObject({ mediaPipeline: pipelineRef }),
  PlayerEndpoint: z.looseObject({
    mediaPipeline: pipelineRef,
    uri: z.string({ error: 'uri: a string is required' }).min(1).max(4096),
    useEncodedMedia: z.boolean().optional(),
    networkCache: z.number().int().min(0).optional(),
  }),
  RecorderEndpoint: z.looseObject({
    mediaPipeline: pipelineRef,
    uri: z.string({ error: 'uri: a string is required' }).min(1).max(4096),
    mediaProfile: z.string().max(64).optional(),
    stopOnEndOfStream: z.boolean().optional(),
  }),
};

/** The type name without Kurento's module prefix (`kurento.WebRtcEndpoint` → `WebRtcEndpoint`). */
export function bareType(type: string): string {
  return type.startsWith('kurento.') ? type.slice('kurento.'.length) : type;
}

export async function createObject(ctx: KurentoContext, rawType: unknown, constructorParams: unknown): Promise<MediaObject> {
  if (typeof rawType !== 'string' || rawType.length === 0 || rawType.length > 128) throw illegalParam("create: 'type' must be a type name");
  const type = bareType(rawType);
  ctx.set.checkRoom(ctx.principal.user);
  if (type === 'MediaPipeline') {
    const p = new Pipeline(`${randomUUID()}_kurento.MediaPipeline`, ctx.principal.user);
    ctx.set.add(p, ctx.session);
    return p;
  }
  if (!(ELEMENT_TYPES as readonly string[]).includes(type)) {
    const why = NOT_PROVIDED[type];
    throw new KurentoError(KMS.MEDIA_OBJECT_TYPE_NOT_FOUND, why ? `Type '${rawType}' is not provided by nkmedia-ts: ${why}` : `Type '${rawType}' does not exist`);
  }
  const elementType = type as ElementType;
  const params = checkedParams(schemas[elementType], elementType, 'constructorParams', constructorParams);
  const pipeline = ctx.set.lookup(params.mediaPipeline, ctx.principal);
  if (!(pipeline instanceof Pipeline)) throw illegalParam(`mediaPipeline: '${params.mediaPipeline}' is not a MediaPipeline`);
  const id = `${pipeline.id}/${randomUUID()}_kurento.${elementType}`;

  // Everything a client can get wrong is checked before anything is allocated.
  let target: string | undefined;
  let recording: Element['recording'];
  let data = false;
  if (elementType === 'WebRtcEndpoint') {
    data = (params as z.output<typeof schemas.WebRtcEndpoint>).useDataChannels ?? false;
  } else if (elementType === 'RtpEndpoint') {
    if ((params as z.output<typeof schemas.RtpEndpoint>).crypto !== undefined) {
      throw illegalParam('RtpEndpoint: crypto (SDES-SRTP) is not provided: this server\'s RTP endpoint speaks plain RTP/AVP only');
    }
  } else if (elementType === 'PlayerEndpoint') {
    target = playerUri(ctx.uris, (params as z.output<typeof schemas.PlayerEndpoint>).uri);
  } else if (elementType === 'RecorderEndpoint') {
    const p = params as z.output<typeof schemas.RecorderEndpoint>;
    target = recorderTarget(ctx.uris, p.uri);
    const profileName = p.mediaProfile ?? (/\.mp4$/i.test(target) ? 'MP4' : 'WEBM');
    const profile = PROFILES[profileName as keyof typeof PROFILES];
    if (!profile || !Object.hasOwn(PROFILES, profileName)) {
      throw illegalParam(`mediaProfile '${profileName}' is not provided (use ${Object.keys(PROFILES).join(', ')})`);
    }
    recording = { path: target, format: profile.format, kinds: profile.kinds, stopOnEndOfStream: p.stopOnEndOfStream ?? false };
  }

  const sessionKind = elementType === 'WebRtcEndpoint' ? 'webrtc' : elementType === 'RtpEndpoint' ? 'rtp' : undefined;
  if (sessionKind) {
    try {
      ctx.set.quota.reserve(id, { user: ctx.principal.user, connId: ctx.session.id }, sessionKind);
    } catch (err) {
      throw toKurentoError(err, KMS.NOT_ENOUGH_RESOURCES);
    }
  }
  let engineId: string;
  try {
    const tag = id;
    engineId = elementType === 'WebRtcEndpoint' ? await ctx.engine.createWebRtcEndpoint({ tag })
      : elementType === 'RtpEndpoint' ? await ctx.engine.createRtpEndpoint({ tag })
      : elementType === 'PassThrough' ? await ctx.engine.createPassThrough({ tag })
      : elementType === 'PlayerEndpoint' ? await ctx.engine.createPlayerEndpoint({ tag })
      : await ctx.engine.createRecorderEndpoint({ tag });
  } catch (err) {
    ctx.set.quota.release(id);
    throw toKurentoError(err);
  }
  if (pipeline.released) {
    // The pipeline went while the element was being made: nothing may be left behind.
    await ctx.engine.release(engineId).catch(() => undefined);
    ctx.set.quota.release(id);
    throw new KurentoError(KMS.MEDIA_OBJECT_NOT_FOUND, `Object '${pipeline.id}' not found`);
  }
  const el = new Element(id, elementType, ctx.principal.user, pipeline, engineId, sessionKind);
  el.useDataChannels = data;
  if (target !== undefined) el.target = target;
  if (elementType === 'PlayerEndpoint' || elementType === 'RecorderEndpoint') el.uri = (params as { uri: string }).uri;
  el.recording = recording;
  ctx.set.add(el, ctx.session);
  return el;
}
