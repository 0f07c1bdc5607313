#!/usr/bin/env node
// An OTLP/HTTP trace receiver for Warren's tests. It decodes requests with
// protobufjs from the .proto files vendored in otel/proto (a decoder that
// shares no code with Warren's protobuf-c encoder), and appends one JSON
// line per received span to a file.
//
//   node tests/otlp/receiver.js PORT OUT_FILE [--fail N] [--fail-status CODE]
//
// OUT_FILE "-" decodes every request and writes nothing (bench/run).
// Listens on 127.0.0.1:PORT and prints "listening PORT" on stdout once it
// accepts connections. POST /v1/traces takes application/x-protobuf (and
// application/json as OTLP's JSON mapping writes it) and is answered 200
// with an empty ExportTraceServiceResponse. With --fail N (or OTLP_FAIL=N)
// the first N requests are answered with --fail-status (OTLP_FAIL_STATUS,
// default 503) and their spans are not written; N = -1 fails every request.
// Each line of OUT_FILE:
//   {"traceId":hex,"spanId":hex,"parentSpanId":hex or "","traceState":"",
//    "flags":n,"name":"","kind":n,"startTimeUnixNano":"decimal",
//    "endTimeUnixNano":"decimal","attributes":{key:value},
//    "events":[{"name","timeUnixNano","attributes"}],
//    "links":[{"traceId","spanId","traceState","attributes"}],
//    "status":{"code":n,"message":""},"resource":{key:value},
//    "scope":{"name","version"}}
// Attribute values: strings, booleans, numbers (an int64 beyond 2^53 as
// its decimal string), arrays, objects (kvlist), bytes as hex.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const protobuf = require('protobufjs');

function usage() {
  process.stderr.write(
      'usage: receiver.js PORT OUT_FILE [--fail N] [--fail-status CODE]\n');
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 2) usage();
const port = Number(args[0]);
const out = args[1];
let failLeft = Number(process.env.OTLP_FAIL || 0);
let failStatus = Number(process.env.OTLP_FAIL_STATUS || 503);
for (let i = 2; i < args.length; i += 2) {
  if (args[i] === '--fail') failLeft = Number(args[i + 1]);
  else if (args[i] === '--fail-status') failStatus = Number(args[i + 1]);
  else usage();
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) usage();

const protoDir = process.env.OTLP_PROTO_DIR ||
    path.join(__dirname, '..', '..', 'otel', 'proto');
const root = new protobuf.Root();
// Imports are relative to the include root, as protoc's -I.
root.resolvePath = (origin, target) => path.join(protoDir, target);
root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
const Request = root.lookupType(
    'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const Response = root.lookupType(
    'opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');

const hex = (b) => (b && b.length ? Buffer.from(b).toString('hex') : '');
const dec = (n) => (n === undefined || n === null ? '0' : n.toString());

function int64(v) {
  const s = dec(v);
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : s;
}

function anyValue(v) {
  if (!v) return null;
  switch (v.value) {
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'intValue': return int64(v.intValue);
    case 'doubleValue': return v.doubleValue;
    case 'bytesValue': return hex(v.bytesValue);
    case 'arrayValue': return (v.arrayValue.values || []).map(anyValue);
    case 'kvlistValue': return attrs(v.kvlistValue.values);
    default: return null;
  }
}

function attrs(list) {
  const o = {};
  for (const kv of list || []) o[kv.key] = anyValue(kv.value);
  return o;
}

function spanLine(s, resource, scope) {
  return JSON.stringify({
    traceId: hex(s.traceId),
    spanId: hex(s.spanId),
    parentSpanId: hex(s.parentSpanId),
    traceState: s.traceState || '',
    flags: s.flags || 0,
    name: s.name,
    kind: s.kind || 0,
    startTimeUnixNano: dec(s.startTimeUnixNano),
    endTimeUnixNano: dec(s.endTimeUnixNano),
    attributes: attrs(s.attributes),
    events: (s.events || []).map((e) => ({
      name: e.name,
      timeUnixNano: dec(e.timeUnixNano),
      attributes: attrs(e.attributes),
    })),
    links: (s.links || []).map((l) => ({
      traceId: hex(l.traceId),
      spanId: hex(l.spanId),
      traceState: l.traceState || '',
      attributes: attrs(l.attributes),
    })),
    status: {
      code: (s.status && s.status.code) || 0,
      message: (s.status && s.status.message) || '',
    },
    resource,
    scope,
  });
}

// OTLP's JSON mapping writes ids as hex, not as protobuf JSON's base64.
function jsonIds(obj) {
  const fix = (o, k) => {
    if (typeof o[k] === 'string') o[k] = Buffer.from(o[k], 'hex');
  };
  for (const rs of obj.resourceSpans || [])
    for (const ss of rs.scopeSpans || [])
      for (const s of ss.spans || []) {
        fix(s, 'traceId'), fix(s, 'spanId'), fix(s, 'parentSpanId');
        for (const l of s.links || []) fix(l, 'traceId'), fix(l, 'spanId');
      }
  return obj;
}

function decode(type, body) {
  if (type === 'application/x-protobuf') return Request.decode(body);
  return Request.fromObject(jsonIds(JSON.parse(body.toString('utf8'))));
}

function reply(res, code, type, body) {
  res.writeHead(code, {'Content-Type': type, 'Content-Length': body.length});
  res.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const type = (req.headers['content-type'] || '').split(';')[0].trim();
    const json = type === 'application/json';
    if (req.method !== 'POST' || req.url !== '/v1/traces')
      return reply(res, 404, 'text/plain', Buffer.from('not found\n'));
    if (!json && type !== 'application/x-protobuf')
      return reply(res, 415, 'text/plain', Buffer.from('unsupported\n'));
    if (failLeft !== 0) {
      if (failLeft > 0) failLeft--;
      return reply(res, failStatus, 'text/plain', Buffer.from('failing\n'));
    }
    let msg;
    try {
      msg = decode(type, Buffer.concat(chunks));
    } catch (e) {
      process.stderr.write(`receiver: undecodable request: ${e.message}\n`);
      return reply(res, 400, 'text/plain', Buffer.from(e.message + '\n'));
    }
    const lines = [];
    // OUT_FILE "-": decoded, as a collector must, and not written (bench/run).
    for (const rs of out === '-' ? [] : msg.resourceSpans || []) {
      const resource = attrs(rs.resource && rs.resource.attributes);
      for (const ss of rs.scopeSpans || []) {
        const scope = {
          name: (ss.scope && ss.scope.name) || '',
          version: (ss.scope && ss.scope.version) || '',
        };
        for (const s of ss.spans || [])
          lines.push(spanLine(s, resource, scope) + '\n');
      }
    }
    // One write per request: a reader never sees half a line.
    if (lines.length) fs.appendFileSync(out, lines.join(''));
    if (json) return reply(res, 200, 'application/json', Buffer.from('{}'));
    reply(res, 200, 'application/x-protobuf',
          Buffer.from(Response.encode(Response.create({})).finish()));
  });
});

server.on('error', (e) => {
  process.stderr.write(`receiver: ${e.message}\n`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT'])
  process.on(sig, () => server.close(() => process.exit(0)));
