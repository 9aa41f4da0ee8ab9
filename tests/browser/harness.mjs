// Shared pieces of the browser tests: start the real gateway, launch Debian's chromium.
import { chromium } from "playwright-core";

export { ROOT, startGateway, tempConfig, gatewaySupportsResume } from "./gateway.mjs";

/** Headless Debian chromium, as this machine can run it. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
}
