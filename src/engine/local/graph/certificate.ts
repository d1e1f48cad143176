// One DTLS certificate for every endpoint of the process. Generating a key pair per connection
// dominated answer time; browsers only check that the fingerprint in the SDP matches.
import { RTCDtlsTransport, type RTCCertificate } from 'werift';

let shared: Promise<RTCCertificate> | undefined;

export function sharedCertificate(): Promise<RTCCertificate> {
  shared ??= RTCDtlsTransport.SetupCertificate().then((cert) => {
    // werift re-parses the X.509 certificate to hash it on every SDP it writes; do it once.
    const fingerprints = cert.getFingerprints();
    cert.getFingerprints = () => fingerprints;
    return cert;
  });
  return shared;
}
