"""Print, as JSON, the raw Glance v2 records (every property) of the images that cloud CLOUD's
user sees in REGION, through openstacksdk and clouds.yaml as nodepool reaches them.

Usage: python glance_images.py CLOUD REGION   (the nodepool venv's python)
"""
import json
import sys

import openstack

cloud, region = sys.argv[1:3]
conn = openstack.connect(cloud=cloud, region_name=region)
response = conn.image.get("/images")
response.raise_for_status()
json.dump(response.json()["images"], sys.stdout)
