// Chromium reaching the server only through a TURN relay: coturn, started here on the test
// namespace's address with a secret it shares with the server, and a page restricted to relayed
// candidates (`iceTransportPolicy: "relay"`) with the credentials of its login reply. An echo
// session connects through the relay and the page decodes its own video.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startBrowserSuite, eventually, NETNS_ADDR, type BrowserSuite } from './harness.js';
import { haveCoturn, startCoturn, type Coturn } from '../test/helpers/coturn.js';

const SECRET = 'browser-suite-turn-secret-0123456';

let suite: BrowserSuite | undefined;
let coturn: Coturn | undefined;

before(async () => {
  if (!haveCoturn) return;
  coturn = await startCoturn({ address: NETNS_ADDR, secret: SECRET });
  suite = await startBrowserSuite({ server: { ice: { client_turn: [{ urls: coturn.url, secret: SECRET }] } } });
});

after(async () => {
  await suite?.close();
  coturn?.stop();
});

describe('TURN relay with credentials from the server', { skip: haveCoturn ? false : 'coturn (turnserver) is not installed', timeout: 60000 }, () => {
  it('a relay-only page echoes through coturn and decodes its own video', async () => {
    const page = await suite!.openPage('relay-echo');
    await page.connect('alice');
    const id = await page.startSession({ type: 'echo', relayOnly: true });
    await page.waitConnected(id);
    const st = await eventually(async () => {
      const s = await page.stats(id);
      return s.inbound.video.framesDecoded > 20 && s.inbound.audio.packets > 20 ? s : undefined;
    }, 15000, 'the page decoding its own video through the relay');
    assert.equal(st.selectedPair?.localType, 'relay', `the pair in use is relayed: ${JSON.stringify(st.selectedPair)}`);
    assert.equal(st.selectedPair?.local.split(':')[0], NETNS_ADDR, 'the relay is coturn\'s, on the namespace address');
    await page.screenshot('turn-relay-echo');
  });
});
