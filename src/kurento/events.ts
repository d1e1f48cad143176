// Engine events in Kurento's words: each engine event updates the element's readable state
// (flows, media and connection states, player/recorder state) and becomes the Kurento events a
// client subscribes to.
import type { EngineEvent } from '../engine/types.js';
import { KMS } from './errors.js';
import type { Element } from './objects.js';
import { kurentoMediaType } from './wire.js';

export interface KurentoEvent { type: string; data: Record<string, unknown> }

/** The candidate as Kurento's IceCandidate complex type. */
export function iceCandidateValue(c: { candidate: string; sdpMid?: string; sdpMLineIndex: number }): Record<string, unknown> {
  return { __module__: 'kurento', __type__: 'IceCandidate', candidate: c.candidate, sdpMid: c.sdpMid ?? String(c.sdpMLineIndex), sdpMLineIndex: c.sdpMLineIndex };
}

export function translateEngineEvent(el: Element, ev: EngineEvent): KurentoEvent[] {
  switch (ev.type) {
    case 'ice_candidate': {
      const c = { candidate: ev.candidate.candidate.replace(/^a=/, ''), sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex };
      el.localCandidates.push(c);
      return [{ type: 'IceCandidateFound', data: { candidate: iceCandidateValue(c) } }];
    }
    case 'ice_gathering_done':
      el.gathering = 'done';
      return el.elementType === 'WebRtcEndpoint' ? [{ type: 'IceGatheringDone', data: {} }] : [];
    case 'connection_state': {
      const out: KurentoEvent[] = [];
      const ice = ({ new: 'DISCONNECTED', connecting: 'CONNECTING', connected: 'READY', disconnected: 'DISCONNECTED', failed: 'FAILED', closed: 'DISCONNECTED' } as const)[ev.state];
      if (el.elementType === 'WebRtcEndpoint' && ice !== el.iceState) {
        el.iceState = ice;
        out.push({ type: 'IceComponentStateChanged', data: { state: ice, streamId: 1, componentId: 1 } });
        if (ev.state === 'connected' || ev.state === 'failed') {
          out.push({ type: 'DtlsConnectionStateChange', data: { state: ev.state === 'connected' ? 'CONNECTED' : 'FAILED', connectionId: el.id } });
        }
      }
      const conn = ev.state === 'connected' ? 'CONNECTED' : ev.state === 'connecting' || ev.state === 'new' ? undefined : 'DISCONNECTED';
      if (conn && conn !== el.connectionState) {
        out.push({ type: 'ConnectionStateChanged', data: { oldState: el.connectionState, newState: conn } });
        el.connectionState = conn;
        if (conn === 'CONNECTED') out.push({ type: 'MediaSessionStarted', data: {} });
        else out.push({ type: 'MediaSessionTerminated', data: {} });
      }
      return out;
    }
    case 'media_flow': {
      const set = ev.direction === 'in' ? el.flowingIn : el.flowingOut;
      const up = ev.state === 'up';
      if (up === set.has(ev.media)) return [];
      if (up) set.add(ev.media); else set.delete(ev.media);
      const out: KurentoEvent[] = [{
        type: ev.direction === 'in' ? 'MediaFlowInStateChanged' : 'MediaFlowOutStateChanged',
        data: { state: up ? 'FLOWING' : 'NOT_FLOWING', padName: 'default', mediaType: kurentoMediaType(ev.media) },
      }];
      // KMS's MediaState says whether media arrives at the endpoint at all.
      if (el.isSdpEndpoint && ev.direction === 'in') {
        const media = el.flowingIn.size > 0 ? 'CONNECTED' : 'DISCONNECTED';
        if (media !== el.mediaState) {
          out.push({ type: 'MediaStateChanged', data: { oldState: el.mediaState, newState: media } });
          el.mediaState = media;
        }
      }
      return out;
    }
    case 'recorder_state': {
      const uri = ({ recording: 'START', paused: 'PAUSE', stopped: 'STOP' } as const)[ev.state];
      el.uriState = uri;
      const named = ({ recording: 'Recording', paused: 'Paused', stopped: 'Stopped' } as const)[ev.state];
      return [{ type: named, data: {} }, { type: 'UriEndpointStateChanged', data: { state: uri } }];
    }
    case 'player_state': {
      if (ev.state === 'eos') {
        el.uriState = 'STOP';
        el.started = false;
        return [{ type: 'EndOfStream', data: {} }, { type: 'UriEndpointStateChanged', data: { state: 'STOP' } }];
      }
      const uri = ({ playing: 'START', paused: 'PAUSE', stopped: 'STOP' } as const)[ev.state];
      if (uri === el.uriState) return [];
      el.uriState = uri;
      return [{ type: 'UriEndpointStateChanged', data: { state: uri } }];
    }
    case 'player_loop':
      return [];
    case 'error':
      return [{ type: 'Error', data: { description: ev.message, errorCode: KMS.UNEXPECTED_ERROR, type: ev.code ?? 'UNEXPECTED_ERROR' } }];
  }
}
