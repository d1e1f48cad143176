// The hello-world page: a kurento-utils WebRtcPeerSendrecv (camera and microphone out, the media
// server's loopback back in) signalled through the application server's /helloworld WebSocket.
//
// For automation: window.helloWorld = { start(), stop(), state }, where state is 'idle',
// 'starting', 'started' or 'error:<message>'; start() resolves with the state once it has left
// 'starting'.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const localVideo = $('localVideo');
  const remoteVideo = $('remoteVideo');
  const startButton = $('start');
  const stopButton = $('stop');

  let state = 'idle';
  let socket = null;
  let webRtcPeer = null;
  let waiting = [];

  function setState(next) {
    state = next;
    $('state').textContent = next;
    startButton.disabled = next === 'starting' || next === 'started';
    stopButton.disabled = next === 'idle';
    if (next !== 'starting') for (const resolve of waiting.splice(0)) resolve(next);
  }

  function settled() {
    return state === 'starting' ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(state);
  }

  // ---- the application server's WebSocket ----
  function connect() {
    if (socket && (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN)) return socket;
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/helloworld`);
    ws.onmessage = (event) => onMessage(JSON.parse(event.data));
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      if (state === 'starting' || state === 'started') fail('the connection to the application server closed');
    };
    socket = ws;
    return ws;
  }

  function send(message) {
    const ws = connect();
    const text = JSON.stringify(message);
    if (ws.readyState === WebSocket.OPEN) ws.send(text);
    else ws.addEventListener('open', () => ws.send(text), { once: true });
  }

  function onMessage(message) {
    switch (message.id) {
      case 'startResponse': {
        const peer = webRtcPeer;
        if (!peer) return;
        peer.processAnswer(message.sdpAnswer, (error) => {
          if (peer !== webRtcPeer) return;
          if (error) fail(error);
          else setState('started');
        });
        break;
      }
      case 'iceCandidate':
        if (!webRtcPeer) return;
        webRtcPeer.addIceCandidate(message.candidate, (error) => {
          if (error) console.error('adding the media server\'s candidate failed:', error);
        });
        break;
      case 'error':
        fail(message.message);
        break;
      default:
        console.warn('unexpected message', message);
    }
  }

  // ---- start / stop ----
  function start() {
    if (state === 'starting' || state === 'started') return settled();
    setState('starting');
    connect();
    const options = {
      localVideo,
      remoteVideo,
      onicecandidate: (candidate) => send({ id: 'onIceCandidate', candidate }),
      // No STUN/TURN: without this kurento-utils would use a list of public STUN servers.
      configuration: { iceServers: [] },
    };
    const peer = kurentoUtils.WebRtcPeer.WebRtcPeerSendrecv(options, (error) => {
      if (peer !== webRtcPeer) return;
      if (error) return fail(error);
      peer.generateOffer((error, sdpOffer) => {
        if (peer !== webRtcPeer) return;
        if (error) return fail(error);
        send({ id: 'start', sdpOffer });
      });
    });
    webRtcPeer = peer;
    return settled();
  }

  function dispose() {
    const peer = webRtcPeer;
    webRtcPeer = null;
    if (peer) peer.dispose();
  }

  function stop() {
    dispose();
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ id: 'stop' }));
    setState('idle');
    return state;
  }

  function fail(error) {
    const message = (error && error.message) || String(error);
    console.error('hello world:', message);
    dispose();
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ id: 'stop' }));
    setState(`error:${message}`);
  }

  startButton.addEventListener('click', () => { start(); });
  stopButton.addEventListener('click', () => { stop(); });
  window.addEventListener('beforeunload', () => { if (socket) socket.close(); });

  window.helloWorld = {
    start,
    stop,
    get state() { return state; },
  };
}());
