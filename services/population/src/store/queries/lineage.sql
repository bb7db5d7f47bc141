WITH RECURSIVE up (id, merged_into, depth) AS (
    SELECT id, merged_into, 0 FROM persons WHERE id = $1
    UNION ALL
    SELECT p.id, p.merged_into, up.depth + 1 FROM persons p JOIN up ON p.id = up.merged_into
    WHERE up.depth < $2
),
down (id, depth) AS (
    SELECT id, 0 FROM up WHERE merged_into IS NULL
    UNION ALL
    SELECT p.id, down.depth + 1 FROM persons p JOIN down ON p.merged_into = down.id
    WHERE down.depth < $2
)
SELECT down.id, {directives}
FROM down LEFT JOIN consent_directives c ON c.person_id = down.id AND down.depth = 0
ORDER BY down.depth, down.id
