// A small MessagePack codec: the subset the SignalR hub protocol uses (nil, booleans, integers,
// floats, strings, binary, arrays, maps; extension values are kept as {type, data}), so that the
// example needs no dependency. A production upstream may use @msgpack/msgpack instead.
//
// The hub protocol frames each MessagePack message with its length as a VarInt (7 bits a byte,
// low bits first); frame() and unframe() add and remove it.

/** Thrown for input that is not MessagePack this codec reads. */
export class MsgpackError extends Error {}

const MAX_DEPTH = 64; // nesting deeper than this is refused, not a stack overflow

/**
 * decode reads exactly one value from buf (a Uint8Array); anything after it is an error.
 * Integers beyond Number.MAX_SAFE_INTEGER lose precision (they become Numbers).
 */
export function decode(buf) {
  const r = { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength), pos: 0 };
  const v = read(r, 0);
  if (r.pos !== buf.length) throw new MsgpackError(`${buf.length - r.pos} bytes after the value`);
  return v;
}

function need(r, n) {
  if (r.pos + n > r.buf.length) throw new MsgpackError("truncated input");
  const at = r.pos;
  r.pos += n;
  return at;
}

function str(r, n) {
  const at = need(r, n);
  return new TextDecoder("utf-8", { fatal: true }).decode(r.buf.subarray(at, at + n));
}

function array(r, n, depth) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = read(r, depth + 1);
  return out;
}

function map(r, n, depth) {
  const out = {};
  for (let i = 0; i < n; i++) {
    const k = read(r, depth + 1);
    if (typeof k !== "string" && typeof k !== "number") throw new MsgpackError("a map key that is not a string or number");
    Object.defineProperty(out, String(k), { value: read(r, depth + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function read(r, depth) {
  if (depth > MAX_DEPTH) throw new MsgpackError(`nested deeper than ${MAX_DEPTH}`);
  const b = r.buf[need(r, 1)];
  if (b <= 0x7f) return b;
  if (b >= 0xe0) return b - 0x100;
  if ((b & 0xf0) === 0x80) return map(r, b & 0x0f, depth);
  if ((b & 0xf0) === 0x90) return array(r, b & 0x0f, depth);
  if ((b & 0xe0) === 0xa0) return str(r, b & 0x1f);
  const v = r.view;
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: { const n = v.getUint8(need(r, 1)); return r.buf.slice(need(r, n), r.pos); }
    case 0xc5: { const n = v.getUint16(need(r, 2)); return r.buf.slice(need(r, n), r.pos); }
    case 0xc6: { const n = v.getUint32(need(r, 4)); return r.buf.slice(need(r, n), r.pos); }
    case 0xc7: { const n = v.getUint8(need(r, 1)); return ext(r, n); }
    case 0xc8: { const n = v.getUint16(need(r, 2)); return ext(r, n); }
    case 0xc9: { const n = v.getUint32(need(r, 4)); return ext(r, n); }
    case 0xca: return v.getFloat32(need(r, 4));
    case 0xcb: return v.getFloat64(need(r, 8));
    case 0xcc: return v.getUint8(need(r, 1));
    case 0xcd: return v.getUint16(need(r, 2));
    case 0xce: return v.getUint32(need(r, 4));
    case 0xcf: return Number(v.getBigUint64(need(r, 8)));
    case 0xd0: return v.getInt8(need(r, 1));
    case 0xd1: return v.getInt16(need(r, 2));
    case 0xd2: return v.getInt32(need(r, 4));
    case 0xd3: return Number(v.getBigInt64(need(r, 8)));
    case 0xd4: return ext(r, 1);
    case 0xd5: return ext(r, 2);
    case 0xd6: return ext(r, 4);
    case 0xd7: return ext(r, 8);
    case 0xd8: return ext(r, 16);
    case 0xd9: return str(r, v.getUint8(need(r, 1)));
    case 0xda: return str(r, v.getUint16(need(r, 2)));
    case 0xdb: return str(r, v.getUint32(need(r, 4)));
    case 0xdc: return array(r, v.getUint16(need(r, 2)), depth);
    case 0xdd: return array(r, v.getUint32(need(r, 4)), depth);
    case 0xde: return map(r, v.getUint16(need(r, 2)), depth);
    case 0xdf: return map(r, v.getUint32(need(r, 4)), depth);
  }
  throw new MsgpackError(`unknown type byte 0x${b.toString(16)}`);
}

function ext(r, n) {
  const type = r.view.getInt8(need(r, 1));
  return { type, data: r.buf.slice(need(r, n), r.pos) };
}

/** encode writes v (null/undefined, boolean, number, string, Uint8Array, array, plain object). */
export function encode(v) {
  const out = [];
  write(out, v, 0);
  return Buffer.concat(out);
}

function head(out, bytes) {
  out.push(Buffer.from(bytes));
}

function sized(out, n, small, smallMax, c8, c16, c32) {
  if (small !== undefined && n <= smallMax) return head(out, [small | n]);
  if (c8 !== undefined && n <= 0xff) return head(out, [c8, n]);
  if (n <= 0xffff) return head(out, [c16, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = c32;
  b.writeUInt32BE(n, 1);
  out.push(b);
}

function write(out, v, depth) {
  if (depth > MAX_DEPTH) throw new MsgpackError(`nested deeper than ${MAX_DEPTH}`);
  if (v === null || v === undefined) return head(out, [0xc0]);
  switch (typeof v) {
    case "boolean":
      return head(out, [v ? 0xc3 : 0xc2]);
    case "number":
      if (Number.isSafeInteger(v)) {
        if (v >= 0 && v <= 0x7f) return head(out, [v]);
        if (v < 0 && v >= -32) return head(out, [v + 0x100]);
        const b = Buffer.alloc(9);
        b[0] = 0xd3;
        b.writeBigInt64BE(BigInt(v), 1);
        return out.push(b);
      } else {
        const b = Buffer.alloc(9);
        b[0] = 0xcb;
        b.writeDoubleBE(v, 1);
        return out.push(b);
      }
    case "bigint": {
      const b = Buffer.alloc(9);
      b[0] = 0xd3;
      b.writeBigInt64BE(v, 1);
      return out.push(b);
    }
    case "string": {
      const s = Buffer.from(v, "utf8");
      sized(out, s.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
      return out.push(s);
    }
  }
  if (v instanceof Uint8Array) {
    sized(out, v.length, undefined, 0, 0xc4, 0xc5, 0xc6);
    return out.push(Buffer.from(v));
  }
  if (Array.isArray(v)) {
    sized(out, v.length, 0x90, 15, undefined, 0xdc, 0xdd);
    for (const e of v) write(out, e, depth + 1);
    return;
  }
  if (typeof v === "object") {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    sized(out, keys.length, 0x80, 15, undefined, 0xde, 0xdf);
    for (const k of keys) {
      write(out, k, depth + 1);
      write(out, v[k], depth + 1);
    }
    return;
  }
  throw new MsgpackError(`cannot encode a ${typeof v}`);
}

/** frame prefixes a message with its length, as the hub protocol does. */
export function frame(msg) {
  const len = [];
  let n = msg.length;
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    len.push(b);
  } while (n > 0);
  return Buffer.concat([Buffer.from(len), msg]);
}

/**
 * unframe removes the length prefix when buf is exactly one framed message, else returns buf as it
 * is (raftplane and Azure send the invocation unframed; accept both).
 */
export function unframe(buf) {
  let n = 0;
  for (let i = 0; i < 5 && i < buf.length; i++) {
    n += (buf[i] & 0x7f) * 2 ** (7 * i);
    if ((buf[i] & 0x80) === 0) {
      return i + 1 + n === buf.length && n > 0 ? buf.subarray(i + 1) : buf;
    }
  }
  return buf;
}
