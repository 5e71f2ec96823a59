/**
 * A DataPipeError (422, code 8) that also carries the list of problems. The body keeps the
 * reference's `detail` string and adds `errors`:
 * `{"detail": "422: 8: DataPipe Validation Error: 2 validation errors for DataPipeConfig",
 *   "errors": [{"stage": "ActivePeriod", "message": "..."}, ...]}`
 * (CSV import entries carry `row` instead of `stage`).
 */
import { PepeunitError } from '../../../../../errors.js';

export interface DataPipeProblem {
  readonly stage?: string;
  readonly row?: number;
  readonly message: string;
}

export class DataPipeDetailedError extends PepeunitError {
  readonly errors: readonly DataPipeProblem[];
  constructor(message: string, errors: readonly DataPipeProblem[]) {
    super(422, 8, 'DataPipe Validation Error', message);
    this.errors = errors;
  }

  get body(): { detail: string; errors: DataPipeProblem[] } {
    return { detail: this.detail, errors: [...this.errors] };
  }
}
