/**
 * Which MQTT client ids a Unit may use (issue 10: no client-id takeover). The reference clients
 * connect with the unit's uuid as the client id (Python: paho `Client(..., unit_uuid)`,
 * MicroPython: `client_id=unit_uuid`); a unit that needs several connections appends a suffix:
 *
 *   <unit uuid>                 the reference clients
 *   <unit uuid>-<anything>      e.g. `<uuid>-sim-1a2b`, `<uuid>-ota`
 *   <unit uuid>_<anything>
 *
 * Compared case-insensitively (uuids are case-insensitive). Any other id is refused at CONNECT,
 * so one unit can never take over (kick, or receive the queued messages of) another's session.
 * Backend tokens (the backend, the ingest) are trusted and use ids of their own.
 */
export function isUnitClientId(clientid: string, unitUuid: string): boolean {
  const id = clientid.toLowerCase();
  const uuid = unitUuid.toLowerCase();
  if (id === uuid) return true;
  if (!id.startsWith(uuid) || id.length <= uuid.length + 1) return false;
  const separator = id.charAt(uuid.length);
  return separator === '-' || separator === '_';
}

/** The client id the reference clients use for a unit. */
export function unitClientId(unitUuid: string): string {
  return unitUuid.toLowerCase();
}
