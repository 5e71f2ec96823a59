/**
 * Domain errors in the reference format (pepeunit-backend.md §0.4): the HTTP body is
 * `{"detail": "<status>: <code>: <Template>: <message>"}`.
 */
export class PepeunitError extends Error {
  readonly statusCode: number;
  readonly errorCode: number;
  readonly template: string;
  readonly detailMessage: string;
  constructor(statusCode: number, errorCode: number, template: string, message: string) {
    super(`${statusCode}: ${errorCode}: ${template}: ${message}`);
    this.name = 'PepeunitError';
    this.statusCode = statusCode;
    this.errorCode = errorCode;
    this.template = template;
    this.detailMessage = message;
  }
  get detail(): string {
    return this.message;
  }
}

const make = (status: number, code: number, template: string) =>
  class extends PepeunitError {
    constructor(message: string) {
      super(status, code, template, message);
    }
  };

export const NoAccessError = make(403, 1, 'No Access');
export const ValidationError = make(422, 2, 'Validation Error');
export const UserError = make(422, 3, 'User Validation Error');
export const CustomPermissionError = make(422, 4, 'Permission Validation Error');
export const GitRepoError = make(422, 5, 'Git Repo Validation Error');
export const RepoError = make(422, 6, 'Repo Validation Error');
export const UnitError = make(422, 7, 'Unit Validation Error');
export const UnitNodeError = make(422, 8, 'UnitNode Validation Error');
export const DataPipeError = make(422, 8, 'DataPipe Validation Error');
export const CustomJSONDecodeError = make(422, 9, 'JSON Decode Error');
export const MqttError = make(422, 10, 'MQTT Error');
export const UpdateError = make(422, 11, 'Update Error');
export const CipherError = make(422, 12, 'Cipher Error');
export const RepositoryRegistryError = make(422, 13, 'Repository Registry Validation Error');
export const GitPlatformClientError = make(422, 14, 'Git Platform Client Error');
export const GrafanaError = make(422, 14, 'Grafana Error');
export const ReadmeGenerationError = make(422, 16, 'Readme Generation Error');
export class FeatureFlagError extends PepeunitError {
  constructor() {
    super(405, 15, 'Feature Flag Error', 'This feature has been disabled by the instance Owner');
  }
}
/** Ours: a resource that does not exist (the reference answers 422 ValidationError for most). */
export const NotFoundError = make(404, 17, 'Not Found');
