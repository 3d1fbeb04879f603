#!/usr/bin/env node
// The CDK app entry (`cdk synth`, `cdk deploy`; see ../cdk.json). Needs no AWS
// account to synthesize: the stack is environment-agnostic.
import { buildApp } from '../lib/app.js';

buildApp().app.synth();
