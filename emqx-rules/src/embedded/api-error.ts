/** An error answer in EMQX's format: `{"code": "UPPER_SNAKE", "message": "..."}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BAD_REQUEST', message);
}

/** A schema-check failure, JSON inside `message` like EMQX's HOCON validation errors. */
export function validationError(path: string, reason: string, extra: Record<string, unknown> = {}): ApiError {
  return badRequest(JSON.stringify({ kind: 'validation_error', path, reason, ...extra }));
}

export function notFound(code: string, message: string): ApiError {
  return new ApiError(404, code, message);
}
