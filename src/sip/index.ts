// The SIP signalling layer: a user agent (UAS and UAC for INVITE calls, REGISTER client) on
// UDP and TCP. It deals in SIP messages and SDP strings only. See docs/SIP.md.
export { SipUserAgent, type SipUserAgentOptions, type InviteOptions } from './ua.js';
export {
  IncomingCall, OutgoingCall, SipCallError,
  type IncomingCallEvents, type OutgoingCallEvents, type CallEnd, type ReinviteResponder,
} from './call.js';
export type { RegisterConfig, RegistrationStatus } from './registration.js';
export type { Source as SipSource, TransportName as SipTransportName } from './transport.js';
export type { NameAddr, SipUri } from './uri.js';
export type { SipLogger } from './log.js';
