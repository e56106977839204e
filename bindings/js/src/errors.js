// The error thrown by confchain: `code` is the reference's number (204, 300, ...; 100 for every
// error without a code name), `name` the code name or confchain's kind (REPLAY, PARSE, ...).
export class ConfchainError extends Error {
  constructor(code, kind, message) {
    super(message);
    this.code = code;
    this.kind = kind;
  }
  get name() {
    return this.kind;
  }
}
