"""Checks docker-compose.yml without a Docker engine: it parses, every idp
node is wired only through variables the configuration knows, and the URLs
point at services the file defines."""

import re
import sys

import yaml

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."


def main() -> int:
    with open(f"{ROOT}/docker-compose.yml", encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    with open(f"{ROOT}/api/src/config.rs", encoding="utf-8") as f:
        known = set(re.findall(r'"(IDP_[A-Z_]+)"', f.read()))
    if not known:
        print("no IDP_* variables found in api/src/config.rs")
        return 1
    services = compose.get("services", {})
    problems = []
    nodes = [name for name, s in services.items() if s.get("image", "").startswith("idp")]
    if len(nodes) < 2:
        problems.append(f"expected at least two idp nodes, found {nodes}")
    for name in nodes:
        env = services[name].get("environment", {})
        for var in env:
            if var not in known:
                problems.append(f"{name}: {var} is not a configuration variable")
        for var in ("IDP_DATABASE_URL", "IDP_EVENTSTORE_URL"):
            url = env.get(var, "")
            host = re.sub(r"^[a-z+]+://([^@/]*@)?", "", url).split(":")[0].split("/")[0]
            if host not in services:
                problems.append(f"{name}: {var} points at {host!r}, not a service here")
        for dep in services[name].get("depends_on", {}):
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
    for p in problems:
        print(p)
    if not problems:
        print(f"docker-compose.yml: {len(services)} services, idp nodes {nodes}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
