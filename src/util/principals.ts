// Who owns things. Users are the names logins give; system principals own what no login may
// touch (sessions of SIP dialogs, call legs): their names start with a character no login can
// produce (logins refuse control characters), so no user — not even one called "sip" — can
// claim them. Only admins and a session's named parties act on system-owned sessions.

const SYSTEM_MARK = '\u0000';

/** The owner name of a system principal (e.g. `systemUser('sip')`). */
export function systemUser(name: string): string { return SYSTEM_MARK + name; }

export function isSystemUser(user: string): boolean { return user.startsWith(SYSTEM_MARK); }

/** The name shown on the wire: a system principal shows as its plain name (`sip`). */
export function displayUser(user: string): string { return isSystemUser(user) ? user.slice(1) : user; }

/** Control characters (C0, DEL, C1) are never part of a user name. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Why a name cannot be a user's, or undefined when it can. */
export function userNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'empty';
  if (CONTROL.test(name)) return 'control characters are not allowed';
  return undefined;
}
