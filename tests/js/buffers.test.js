import { describe, expect, it } from "vitest";
import { COLORMAPS, colorize, valueRange } from "../../js/colormap.js";
import { decodeArray } from "../../js/decode.js";
import { RingBuffer } from "../../js/ringbuffer.js";

describe("decodeArray", () => {
  it("views float32 buffers without copying, whatever wrapper the front end uses", () => {
    const src = new Float32Array([1, 2.5, -3, NaN, 5, 6]);
    for (const buffer of [src.buffer, new DataView(src.buffer), new Uint8Array(src.buffer)]) {
      const { data, shape } = decodeArray({ dtype: "float32", shape: [2, 3] }, buffer);
      expect(shape).toEqual([2, 3]);
      expect(Array.from(data)).toEqual(Array.from(src));
    }
    const view = decodeArray({ dtype: "float32", shape: [6] }, src.buffer).data;
    expect(view.buffer).toBe(src.buffer);
  });

  it("copies when the bytes sit at an unaligned offset", () => {
    const bytes = new Uint8Array(4 * 2 + 1);
    new DataView(bytes.buffer).setFloat32(1, 7.5, true);
    new DataView(bytes.buffer).setFloat32(5, -1.25, true);
    const { data } = decodeArray({ dtype: "float32", shape: [2] }, new DataView(bytes.buffer, 1, 8));
    expect(Array.from(data)).toEqual([7.5, -1.25]);
  });

  it("dequantises uint8 with scale and offset, 255 meaning NaN", () => {
    const bytes = new Uint8Array([0, 10, 254, 255]);
    const { data } = decodeArray({ dtype: "uint8", shape: [4], scale: 0.5, offset: -2 }, bytes);
    expect(Array.from(data.slice(0, 3))).toEqual([-2, 3, 125]);
    expect(Number.isNaN(data[3])).toBe(true);
  });

  it("refuses a buffer of the wrong size or an unknown dtype", () => {
    expect(() => decodeArray({ dtype: "float32", shape: [3] }, new ArrayBuffer(8))).toThrow(
      /8 bytes does not hold float32 \[3\]/,
    );
    expect(() => decodeArray({ dtype: "float16", shape: [1] }, new ArrayBuffer(2))).toThrow(
      /unsupported dtype float16/,
    );
  });
});

describe("colour maps", () => {
  it("run from the first anchor to the last", () => {
    expect(Array.from(COLORMAPS.viridis.slice(0, 3))).toEqual([68, 1, 84]);
    expect(Array.from(COLORMAPS.viridis.slice(255 * 3))).toEqual([253, 231, 37]);
    expect(Array.from(COLORMAPS.rdbu.slice(0, 3))).toEqual([5, 48, 97]);
    expect(Array.from(COLORMAPS.rdbu.slice(255 * 3))).toEqual([103, 0, 31]);
  });

  it("put zero at the diverging map's white centre and leave NaN transparent", () => {
    const [lo, hi] = valueRange(new Float32Array([-2, 0.5, 1, NaN]), true);
    expect([lo, hi]).toEqual([-2, 2]);
    const px = colorize(new Float32Array([-2, 0, 2, NaN]), COLORMAPS.rdbu, lo, hi);
    expect(Array.from(px.slice(0, 4))).toEqual([5, 48, 97, 255]);
    const mid = Array.from(px.slice(4, 7));
    mid.forEach((c) => expect(c).toBeGreaterThan(235)); // near white
    expect(Array.from(px.slice(8, 12))).toEqual([103, 0, 31, 255]);
    expect(px[15]).toBe(0);
  });

  it("clamp values outside the range and survive a constant image", () => {
    const px = colorize(new Float32Array([-10, 10]), COLORMAPS.viridis, 0, 1);
    expect(Array.from(px.slice(0, 3))).toEqual([68, 1, 84]);
    expect(Array.from(px.slice(4, 7))).toEqual([253, 231, 37]);
    expect(valueRange(new Float32Array([3, 3]), false)).toEqual([3, 4]);
    expect(valueRange(new Float32Array([NaN]), false)).toEqual([0, 1]);
  });
});

describe("RingBuffer", () => {
  it("keeps the newest items, oldest first", () => {
    const ring = new RingBuffer(3);
    expect(ring.latest).toBeUndefined();
    for (let i = 1; i <= 5; i++) ring.push(i);
    expect(ring.length).toBe(3);
    expect(ring.toArray()).toEqual([3, 4, 5]);
    expect(ring.get(0)).toBe(3);
    expect(ring.get(-1)).toBe(5);
    expect(ring.latest).toBe(5);
    expect(ring.get(3)).toBeUndefined();
    expect(ring.get(-4)).toBeUndefined();
  });

  it("refuses a capacity below one", () => {
    expect(() => new RingBuffer(0)).toThrow(/capacity/);
  });
});
