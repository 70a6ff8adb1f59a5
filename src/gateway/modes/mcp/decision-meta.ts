/** `params._meta` key that may carry a one-time override token instead of the `Aegis-Override` header. */
export const OVERRIDE_META_KEY = 'aegis/override'
/** `_meta` key of a refused call's result (`error.data` key of a refused request): the decision, machine-readable. */
export const DECISION_META_KEY = 'aegis/decision'
