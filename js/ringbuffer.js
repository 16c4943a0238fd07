// The newest `capacity` items, oldest first: the client-side history a user scrubs through
// while the kernel is busy training and cannot be asked for older frames.

export class RingBuffer {
  constructor(capacity) {
    if (!(capacity >= 1)) throw new Error(`capacity must be at least 1, got ${capacity}`);
    this.capacity = capacity;
    this.items = new Array(capacity);
    this.start = 0;
    this.length = 0;
  }

  push(item) {
    if (this.length < this.capacity) {
      this.items[(this.start + this.length) % this.capacity] = item;
      this.length += 1;
    } else {
      this.items[this.start] = item; // overwrite the oldest
      this.start = (this.start + 1) % this.capacity;
    }
  }

  // i = 0 is the oldest kept item, length - 1 the newest; negative i counts from the newest
  get(i) {
    const j = i < 0 ? this.length + i : i;
    if (j < 0 || j >= this.length) return undefined;
    return this.items[(this.start + j) % this.capacity];
  }

  get latest() {
    return this.get(-1);
  }

  toArray() {
    return Array.from({ length: this.length }, (_, i) => this.get(i));
  }
}
