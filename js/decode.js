// Arrays sent by the kernel as binary buffers with their dtype and shape (never JSON lists).
// float32 travels as is; uint8 is quantised: value = offset + scale * byte, NaN as byte 255.

const TYPES = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array, int32: Int32Array };

function bytesOf(buffer) {
  // anywidget hands over DataView, ArrayBuffer or typed arrays depending on the front end
  if (buffer instanceof ArrayBuffer) return { buf: buffer, offset: 0, length: buffer.byteLength };
  return { buf: buffer.buffer, offset: buffer.byteOffset, length: buffer.byteLength };
}

export function decodeArray(meta, buffer) {
  const Type = TYPES[meta.dtype];
  if (!Type) throw new Error(`unsupported dtype ${meta.dtype}`);
  const size = meta.shape.reduce((a, b) => a * b, 1);
  const { buf, offset, length } = bytesOf(buffer);
  if (length !== size * Type.BYTES_PER_ELEMENT) {
    throw new Error(`buffer of ${length} bytes does not hold ${meta.dtype} ${JSON.stringify(meta.shape)}`);
  }
  // a typed-array view needs an aligned offset; copy when the transport did not align it
  const raw = offset % Type.BYTES_PER_ELEMENT === 0
    ? new Type(buf, offset, size)
    : new Type(buf.slice(offset, offset + length));
  if (meta.dtype !== "uint8" || meta.scale === undefined) return { data: raw, shape: meta.shape };
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = raw[i] === 255 ? NaN : meta.offset + meta.scale * raw[i];
  return { data, shape: meta.shape };
}

// Split one buffer holding several arrays back into them (nnmodes_widgets/widgets/binary.py
// `pack`): each meta gives its array's dtype and shape, in payload order; other keys are kept.
export function unpack(metas, buffer) {
  const { buf, offset, length } = bytesOf(buffer);
  let at = 0;
  const out = metas.map((meta) => {
    const Type = TYPES[meta.dtype];
    if (!Type) throw new Error(`unsupported dtype ${meta.dtype}`);
    const size = meta.shape.reduce((a, b) => a * b, 1) * Type.BYTES_PER_ELEMENT;
    if (at + size > length) throw new Error(`buffer of ${length} bytes is too short for its arrays`);
    const item = { ...meta, ...decodeArray(meta, new DataView(buf, offset + at, size)) };
    at += size;
    return item;
  });
  if (at !== length) throw new Error(`buffer of ${length} bytes, but its arrays take ${at}`);
  return out;
}
