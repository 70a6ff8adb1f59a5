/**
 * The package's root entry (`import … from 'aegis'`): the agent SDK
 * (`aegis/sdk`) and the token verifier for tool servers (`aegis/verify`) in
 * one import. The subpaths stay the documented way to import either alone;
 * the servers and the command line are not part of the library surface.
 *
 * @packageDocumentation
 */
export * from './sdk/index.js'
export * from './verify/index.js'
