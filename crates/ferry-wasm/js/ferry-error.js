// Every rejection and error event of Ferry: an Error with a stable `code` for programs.
export class FerryError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "FerryError";
    this.code = code;
  }
}
